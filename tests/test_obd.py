"""The Open Bandit Dataset end to end: the reader, the empirical-Bayes click model of a random log, the BTS
simulation in the fitted shop, and ``fusionsim obd-check`` on a constructed dataset with a known answer
and on the shipped extract of the real sample."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import special

from fusionsim.envs.calibration.obd import ObdError, impressions_of_obd, read_obd
from fusionsim.envs.calibration.position_bias import PBM, PRIOR_STRENGTHS, randomized_pbm
from fusionsim.envs.calibration.schema import read_impression_log
from fusionsim.envs.calibration.statistics import log_statistics
from fusionsim.experiments.cli import cli
from fusionsim.experiments.obd_check import ObdCheckConfig, check_campaign, choice_frequencies, simulate_clicks

EXTRACT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "obd"
THETA = np.array([0.06, 0.045, 0.03])
"""Click rate of the average item at positions 1-3 of the constructed shop."""


def _campaign(folder: Path, name: str, n: int, choose: np.ndarray, gamma: np.ndarray,
              rng: np.random.Generator) -> None:
    """A campaign of ``n`` rounds in the OBD layout: positions uniform, the item at each drawn from ``choose``
    (n_items, 3), clicks from the PBM THETA x ``gamma``."""
    folder.mkdir(parents=True, exist_ok=True)
    position = rng.integers(0, 3, n)
    cdf, draws = np.cumsum(choose, axis=0), rng.random(n)
    item = np.zeros(n, dtype=np.int64)
    for k in range(3):
        item[position == k] = np.searchsorted(cdf[:, k], draws[position == k], side="right")
    item = np.minimum(item, len(gamma) - 1)
    click = (rng.random(n) < THETA[position] * gamma[item]).astype(int)
    pd.DataFrame({"timestamp": pd.date_range("2019-11-24", periods=n, freq="min", tz="UTC").astype(str),
                  "item_id": item, "position": position + 1, "click": click,
                  "propensity_score": choose[item, position],
                  "user_feature_0": rng.choice(["a", "b"], n)}).to_csv(folder / f"{name}.csv")
    pd.DataFrame({"item_id": np.arange(len(gamma))}).to_csv(folder / "item_context.csv")


def _tiny_campaign(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / f"{folder.name}.csv").write_text("item_id,position,click,propensity_score\n0,1,0,1\n")


def _rewrite(path: Path, **columns) -> None:
    """Set ``columns`` of every row of the campaign CSV ``path``."""
    pd.read_csv(path, index_col=0).assign(**columns).to_csv(path)


def _dataset(root: Path, n_items: int = 8, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """random/all and bts/all of a shop with known attractions; returns them and BTS's choice (n_items, 3)."""
    rng = np.random.default_rng(seed)
    gamma = np.linspace(0.4, 1.6, n_items)
    bts = np.tile(np.linspace(1.0, 3.0, n_items)[:, None] ** 2, (1, 3))
    bts /= bts.sum(axis=0)
    _campaign(root / "random" / "all", "all", n, np.full((n_items, 3), 1.0 / n_items), gamma, rng)
    _campaign(root / "bts" / "all", "all", n, bts, gamma, rng)
    return gamma, bts


def test_randomized_pbm_is_the_gamma_poisson_posterior_of_the_chosen_strength():
    # position rates 1/4 and 2/4; item 0 shown at 0, 0, 1 with 1 click, item 1 at 1, 0, 1 with 2 clicks
    item, position = np.array([0, 0, 0, 1, 1, 1, 2]), np.array([0, 0, 1, 1, 0, 1, 0])
    click = np.array([1, 0, 0, 1, 0, 1, 0])
    model, s = randomized_pbm(item, position, click, n_items=4, n_positions=2)
    assert model.theta.tolist() == [1 / 4, 2 / 3]
    expected = np.array([1 / 4 + 1 / 4 + 2 / 3, 2 / 3 + 1 / 4 + 2 / 3, 1 / 4])
    clicks = np.array([1.0, 2.0, 0.0])
    marginal = [np.sum(special.gammaln(clicks + t) - special.gammaln(t) - special.gammaln(clicks + 1)
                       + t * np.log(t / (t + expected)) + special.xlogy(clicks, expected / (t + expected)))
                for t in PRIOR_STRENGTHS]
    assert s == PRIOR_STRENGTHS[int(np.argmax(marginal))]
    np.testing.assert_allclose(model.gamma[:3], (clicks + s) / (expected + s))
    assert np.isnan(model.gamma[3])  # never shown


def test_randomized_pbm_without_clicks_is_the_flat_shop():
    model, s = randomized_pbm(np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), 3, 2)
    assert model.theta.tolist() == [0.0, 0.0] and model.gamma[:2].tolist() == [1.0, 1.0] and s == float("inf")


def test_randomized_pbm_recovers_attractions_and_their_spread():
    rng = np.random.default_rng(3)
    gamma = rng.gamma(2.0, 0.5, 80)  # shape 2: the prior strength to recover
    item, position = rng.integers(0, 80, 400_000), rng.integers(0, 3, 400_000)
    click = (rng.random(400_000) < THETA[position] * gamma[item]).astype(int)
    model, s = randomized_pbm(item, position, click, 80, 3)
    assert 1.2 < s < 3.5
    np.testing.assert_allclose(model.theta / model.theta[0], THETA / THETA[0], rtol=0.05)
    assert np.corrcoef(model.gamma, gamma)[0, 1] > 0.97


def test_simulated_clicks_follow_the_policy_and_the_model():
    model = PBM(np.array([0.5, 0.2, 0.1]), np.array([0.0, 1.0, 2.0]))
    only_item_1 = np.zeros((3, 3))
    only_item_1[1] = 1.0
    position = np.repeat([0, 1, 2], 20_000)
    clicks = simulate_clicks(model, only_item_1, position, np.random.default_rng(0))
    for k, rate in enumerate([0.5, 0.2, 0.1]):
        assert abs(clicks[position == k].mean() - rate) < 0.012
    frequencies = choice_frequencies(np.array([0, 0, 2]), np.array([0, 0, 1]), 3)
    assert frequencies.tolist() == [[1.0, 0.0, 1 / 3], [0.0, 0.0, 1 / 3], [0.0, 1.0, 1 / 3]]


def test_the_fitted_shop_predicts_the_bts_click_rate_of_a_known_shop(tmp_path):
    gamma, bts = _dataset(tmp_path)
    truth = float(np.mean([bts[:, k] @ (THETA[k] * gamma) for k in range(3)]))
    random_log, n_items, _ = read_obd(tmp_path / "random" / "all", "all")
    bts_log, _, _ = read_obd(tmp_path / "bts" / "all", "all")
    result = check_campaign(random_log, bts_log, n_items, ObdCheckConfig(obd=str(tmp_path), bootstrap=200),
                            np.random.default_rng(1))
    low, high = result["simulated_bts_ctr"]["ci95"]
    assert low < truth < high
    assert abs(result["simulated_bts_ctr"]["expected"] - truth) < 0.1 * truth
    real_low, real_high = result["real_bts_ctr"]["ci95"]
    assert real_low < truth < real_high
    for estimator in ("ips", "dr"):
        estimate = result["ope"][estimator]
        assert estimate["ci_lower"] < truth < estimate["ci_upper"]
    # BTS favours the attractive items: the fitted shop sees it beats the random logger
    assert result["simulated_bts_ctr"]["expected"] > result["random_ctr"] * 1.1


def test_obd_check_on_the_shipped_extract_of_the_real_sample(tmp_path):
    result = CliRunner().invoke(cli, ["obd-check", "--obd", str(EXTRACT), "--campaign", "all", "--bootstrap", "50",
                                      "--out", str(tmp_path / "obd")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "obd" / "report.md").read_text()
    assert "| all | 80 | 0.0038 (38) |" in report and "(42) |" in report  # the sample's 38 random and 42 BTS clicks
    assert (tmp_path / "obd" / "complete.json").is_file()


def test_obd_impressions_fit_the_impression_schema(tmp_path):
    log, _, campaign = read_obd(EXTRACT / "random" / "men", "men")
    impressions = impressions_of_obd(log, campaign)
    impressions.to_parquet(tmp_path / "impressions.parquet")
    read = read_impression_log(tmp_path / "impressions.parquet")
    assert len(read) == 10_000 and read["position"].between(0, 2).all() and read["surface"].eq("men").all()
    assert read["click"].sum() == log["click"].sum() and read["segment"].nunique() == 3
    # the fidelity statistics read it like any impression log: rounds are the units, positions 1-3
    statistics = log_statistics(read)
    top = log["position"].to_numpy() == 1
    assert statistics["CTR at position 1"].value == pytest.approx(log["click"].to_numpy()[top].mean())
    assert statistics["CTR at position 1"].units == 10_000 and "CTR on men" in statistics
    assert "CTR at hours 00-06" in statistics and "purchases per click" not in statistics


@pytest.mark.parametrize("build, args, message", [
    (lambda root: root.mkdir(parents=True), (),
     "--obd {root} has no random/ folder (expected the dataset's root: random/<campaign>/, bts/<campaign>/)"),
    (lambda root: (root / "random").mkdir(parents=True) or (root / "bts").mkdir(), (),
     "--obd {root}: no campaign is under both random/ and bts/ (random/ holds [], bts/ holds [])"),
    (lambda root: _dataset(root, n=500), ("--campaign", "men"),
     "--campaign 'men' is not under both random/ and bts/ of --obd {root}; found ['all']"),
    (lambda root: _dataset(root, n=500) and (root / "bts" / "all" / "item_context.csv").write_text("item_id\n0\n"), (),
     "{root}/bts/all/all.csv: item_id 7 is not in {root}/bts/all/item_context.csv (1 items)"),
    (lambda root: _dataset(root, n=500) and (root / "bts" / "all" / "all.csv").write_text("item_id,position\n0,4\n"),
     (),
     "{root}/bts/all/all.csv has no column 'click' (Open Bandit Dataset layout)"),
    (lambda root: _dataset(root, n=500), ("--bootstrap", "5"),
     "Invalid value for '--bootstrap': 5 is not in the range x>=20."),
    (lambda root: _dataset(root, n=500), ("--campaign", "all", "--campaign", "all"), "--campaign 'all' is given twice"),
    (lambda root: None, ("--obd", "no/such/root"), "--obd no/such/root does not exist (a relative path is read from "
                                                   "{cwd})"),
    (lambda root: root.parent.mkdir(exist_ok=True) or root.write_text("x"), (),
     "--obd {root} is a file, not the dataset's root folder"),
    (lambda root: _tiny_campaign(root / "random" / "men") or _tiny_campaign(root / "bts" / "women"), (),
     "--obd {root}: no campaign is under both random/ and bts/ (random/ holds ['men'], bts/ holds ['women'])"),
    (lambda root: _dataset(root, n=500) and _rewrite(root / "random" / "all" / "all.csv", propensity_score=0.5), (),
     "{root}/random/all: column 'propensity_score' must be 1 / items = 0.125 in a uniformly random log; got 0.5 at "
     "row 0"),
    (lambda root: _dataset(root, n=500) and _rewrite(root / "random" / "all" / "all.csv", position=1), (),
     "{root}/random/all has no rounds at position 2: its click rate there cannot be fitted"),
])
def test_obd_check_bad_input_is_one_line(build, args, message, tmp_path):
    root = tmp_path / "obd"
    build(root)
    result = CliRunner().invoke(cli, ["obd-check", "--obd", str(root), *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: " + message.format(root=root, cwd=Path.cwd())
    assert not (tmp_path / "run").exists()


def test_read_obd_names_the_first_bad_row(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    pd.DataFrame({"item_id": [0, 1], "position": [1, 2], "click": [0, 2], "propensity_score": [0.5, 0.5]}).to_csv(
        folder / "c.csv", index=False)
    with pytest.raises(ObdError, match=r"c.csv: column 'click' must be 0 or 1; got 2 at row 1$"):
        read_obd(folder)
