"""A shop's own data: the catalog and impression schemas (bad-input table), fusionsim's logs in them, and
position bias recovered from a log simulated with known parameters."""

import numpy as np
import pandas as pd
import pytest

from fusionsim.envs.calibration.position_bias import pbm_em, randomized_position_bias
from fusionsim.envs.calibration.readers import catalog_of_world, impressions_of_log
from fusionsim.envs.calibration.schema import SchemaError, read_catalog, read_impression_log
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from tests.conftest import small_scenario

CATALOG = "item_id,category,price,brand\n0,shoes/running,59.0,acme\n1,shoes/trail,89.5,acme\n2,socks,4.0,\n"
IMPRESSIONS = ("request_id,timestamp,user_id,surface,query,position,item_id,click,purchase,revenue\n"
               "0,1.5,7,feed,,0,2,1,0,0\n0,1.5,7,feed,,1,0,0,0,0\n1,1.7,-1,search,red shoes,0,1,1,1,89.5\n")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_files_read_with_their_types(tmp_path):
    catalog = read_catalog(_write(tmp_path, "c.csv", CATALOG))
    assert catalog["item_id"].tolist() == [0, 1, 2] and catalog["brand"].tolist() == ["acme", "acme", ""]
    log = read_impression_log(_write(tmp_path, "i.csv", IMPRESSIONS))
    assert log["click"].dtype == np.int64 and log["timestamp"].tolist() == [1.5, 1.5, 1.7]
    assert log["query"].tolist() == ["", "", "red shoes"] and log["user_id"].tolist() == [7, 7, -1]
    # Parquet, with a date-time timestamp (days since 1970)
    frame = pd.read_csv(tmp_path / "i.csv")
    frame["timestamp"] = pd.to_datetime(["2026-01-01 12:00", "2026-01-01 12:00", "2026-01-02 00:00"])
    frame.to_parquet(tmp_path / "i.parquet")
    assert read_impression_log(tmp_path / "i.parquet")["timestamp"].iloc[0] == pytest.approx(20454.5)
    # a zone other than UTC counts in UTC: 13:00 in Berlin (UTC+1 in January) is 12:00 UTC
    frame["timestamp"] = pd.to_datetime(["2026-01-01 13:00"] * 3).tz_localize("Europe/Berlin")
    frame.to_parquet(tmp_path / "z.parquet")
    assert read_impression_log(tmp_path / "z.parquet")["timestamp"].iloc[0] == pytest.approx(20454.5)
    # CSV date-times in ISO 8601, naive ones in UTC
    frame["timestamp"] = ["2026-01-01 12:00:00", "2026-01-01T12:00:00Z", "2026-01-02T01:00:00+01:00"]
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert read_impression_log(tmp_path / "t.csv")["timestamp"].tolist() == pytest.approx([20454.5, 20454.5, 20455.0])


def _replace(text, old, new):
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("name,text,message", [
    ("c.csv", _replace(CATALOG, "item_id,", "id,"),
     "{p} has no column 'item_id' (required: item_id, category, price)"),
    ("c.csv", _replace(CATALOG, "89.5", "-3"), "{p}: column 'price' must be a finite number > 0; got -3.0 at row 1"),
    ("c.csv", _replace(CATALOG, "89.5", "cheap"),
     "{p}: column 'price' must be a finite number > 0; got 'cheap' at row 1"),
    ("c.csv", _replace(CATALOG, "2,socks", "1,socks"),
     "{p}: column 'item_id' must be unique; item 1 appears again at row 2"),
    ("c.csv", _replace(CATALOG, "2,socks", "2.5,socks"), "{p}: column 'item_id' must be an integer >= 0; got 2.5 at row 2"),
    ("c.csv", _replace(CATALOG, ",socks,", ",,"),
     "{p}: column 'category' must be a non-empty category path (levels joined by '/'); got nan at row 2"),
    ("c.csv", "item_id,category,price\n", "--catalog {p} holds no rows"),
    ("c.txt", CATALOG, "--catalog {p}: expected a .parquet or .csv file, or a folder of .parquet parts"),
])
def test_bad_catalogs(tmp_path, name, text, message):
    path = _write(tmp_path, name, text)
    with pytest.raises(SchemaError) as err:
        read_catalog(path)
    assert str(err.value) == message.format(p=path)


@pytest.mark.parametrize("old,new,message", [
    ("position,", "slot,", "{p} has no column 'position' (required: request_id, timestamp, user_id, surface, "
                           "position, item_id, click)"),
    ("feed,,1,0,0", "feed,,1,0,2", "{p}: column 'click' must be 0 or 1; got 2 at row 1"),
    ("feed,,1,0,0", "feed,,-1,0,0", "{p}: column 'position' must be an integer >= 0 (0 = the top slot); got -1 at row 1"),
    ("0,1.5,7,feed,,0,2,1", "0,inf,7,feed,,0,2,1",
     "{p}: column 'timestamp' must be a finite number or a date-time; got inf at row 0"),
    (",-1,search", ",-2,search", "{p}: column 'user_id' must be an integer >= 0, or -1 for an unknown shopper; got -2 "
                                 "at row 2"),
    ("0,1,1,1,89.5", "0,1,0,1,89.5",
     "{p}: column 'purchase' must be 0 where click is 0 (a purchase follows a click); got 1 at row 2"),
    ("1,89.5\n", "1,-89.5\n", "{p}: column 'revenue' must be a finite number >= 0; got -89.5 at row 2"),
    ("feed,,1,0,0", "feed,,0,0,0",
     "{p}: column 'position' must be unique within a request; request 0 shows position 0 again at row 1"),
    ("0,1.5,7,feed,,1", "0,1.5,8,feed,,1",
     "{p}: column 'user_id' must be the same on every row of a request; request 0 has 8 at row 1"),
    ("0,1.5,7,feed,,1", "0,1.5,7,,,1", "{p}: column 'surface' must be a non-empty string; got nan at row 1"),
])
def test_bad_impression_logs(tmp_path, old, new, message):
    path = _write(tmp_path, "i.csv", _replace(IMPRESSIONS, old, new))
    with pytest.raises(SchemaError) as err:
        read_impression_log(path)
    assert str(err.value) == message.format(p=path)


@pytest.mark.parametrize("column, values, shown", [("session_id", [4, 5, 6], "5"), ("device", ["app", "web", "app"],
                                                                                    "'web'"),
                                                 ("action", [1, 2, 0], "2"),
                                                 ("action_propensity", [0.5, 0.25, 0.5], "0.25")])
def test_per_request_columns_hold_one_value_per_request(tmp_path, column, values, shown):
    frame = pd.read_csv(_write(tmp_path, "i.csv", IMPRESSIONS))
    frame[column] = values  # rows 0 and 1 are request 0
    frame.to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(SchemaError) as err:
        read_impression_log(tmp_path / "i.csv")
    assert str(err.value) == (f"{tmp_path / 'i.csv'}: column '{column}' must be the same on every row of a request; "
                              f"request 0 has {shown} at row 1")


def test_bad_impression_propensities_and_scores(tmp_path):
    frame = pd.read_csv(_write(tmp_path, "i.csv", IMPRESSIONS))
    frame["position_propensity"] = [0.5, 0.0, 1.0]
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(SchemaError, match=r"column 'position_propensity' must be a finite number in \(0, 1\]; "
                                          "got 0.0 at row 1"):
        read_impression_log(tmp_path / "p.parquet")
    frame["position_propensity"] = 0.5
    frame["score_popularity"] = [0.1, np.nan, 2.0]
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(SchemaError, match="column 'score_popularity' must be a finite number; got nan at row 1"):
        read_impression_log(tmp_path / "s.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SchemaError, match="is not a readable Parquet file"):
        read_impression_log(tmp_path / "broken.parquet")
    with pytest.raises(SchemaError, match="does not exist"):
        read_impression_log(tmp_path / "none.csv")


def _simulated_impressions(tmp_path, requests=20_000, shuffle=True, **behaviour):
    """A log of a small shop with known examination (all devices decay alike) in the impression schema."""
    scenario = small_scenario(**{"behaviour.mobile_extra_decay": 0.0, **{f"behaviour.{k}": v for k, v in
                                                                         behaviour.items()}})
    run_policy(SimulateConfig(policy="uniform-grid", requests=requests, seed=3, shuffle_slates=shuffle,
                              grid_resolution=2), scenario, tmp_path / "log", progress=False)
    world, arms = make_shop(scenario)
    log = read_interaction_log(tmp_path / "log", "--logs")
    impressions = impressions_of_log(log, [a.name for a in arms], world.catalog.price.astype(np.float64))
    return scenario, world, impressions


def test_a_simulated_log_is_a_valid_impression_log(tmp_path):
    scenario, world, impressions = _simulated_impressions(tmp_path, requests=2_000)
    impressions.to_parquet(tmp_path / "impressions.parquet")
    log = read_impression_log(tmp_path / "impressions.parquet")
    assert len(log) == 2_000 * scenario.candidates.slate_size
    assert {"action", "action_propensity", "score_popularity", "score_new_arrivals", "revenue"} <= set(log.columns)
    raw = read_interaction_log(tmp_path / "log", "--logs")
    assert log["click"].sum() == sum(int(np.sum(c)) for c in raw["clicks"])
    assert log["revenue"].sum() == pytest.approx(float(raw["revenue"].sum()), rel=1e-5)
    catalog_of_world(world).to_csv(tmp_path / "catalog.csv", index=False)
    catalog = read_catalog(tmp_path / "catalog.csv")
    assert len(catalog) == world.catalog.n_items and catalog["category"].iloc[0] == "top0/leaf0"


def test_randomized_position_bias_by_hand():
    # two requests of two positions: clicks (1, 1) and (1, 0): CTR 1 and 0.5, ratio 0.5
    bias = randomized_position_bias(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 1, 1, 0]))
    np.testing.assert_allclose(bias.relative, [1.0, 0.5])
    # per-request residuals (c_1 - 0.5) / 1 - (c_0 - 1) / 2 = +0.5, -0.5: sd 0.7071, half 1.96 * 0.5 * sqrt(2) * 0.7071
    assert bias.high[1] - 0.5 == pytest.approx(1.959964 * 0.5, rel=1e-5) and bias.low[0] == bias.high[0] == 1.0


def test_position_bias_is_recovered_from_a_randomised_log(tmp_path):
    """theta_k / theta_0 = 1 / log2(k + 2) ** decay under the PBM; 200,000 impressions of shuffled slates."""
    scenario, _, impressions = _simulated_impressions(tmp_path, examination_decay=1.0)
    bias = randomized_position_bias(impressions["request_id"].to_numpy(), impressions["position"].to_numpy(),
                                    impressions["click"].to_numpy())
    truth = 1.0 / np.log2(np.arange(scenario.candidates.slate_size) + 2.0)
    covered = (bias.low <= truth) & (truth <= bias.high)
    assert covered.sum() >= 8, (bias.relative, truth)  # 95% intervals: 10 positions, 1 of them exact
    assert abs(bias.relative[1:] / truth[1:] - 1).max() < 0.08
    assert bias.decay() == pytest.approx(1.0, abs=0.05)


def test_pbm_em_recovers_known_parameters():
    rng = np.random.default_rng(0)
    theta = np.array([0.9, 0.6, 0.45, 0.35, 0.3])
    gamma = rng.uniform(0.05, 0.6, size=300)
    item = rng.integers(0, 300, size=200_000)
    position = rng.integers(0, 5, size=200_000)
    click = (rng.random(200_000) < theta[position] * gamma[item]).astype(np.int64)
    bias, model = pbm_em(item, position, click)
    fitted_gamma = model.gamma
    np.testing.assert_allclose(bias.relative, theta / theta[0], rtol=0.03)
    # attraction is identified up to the same factor
    scale = np.median(fitted_gamma / gamma)
    assert np.median(np.abs(fitted_gamma / (scale * gamma) - 1)) < 0.1
    # and its click probabilities are the truth's: the model fits better than the per-position rates
    from fusionsim.envs.calibration.position_bias import log_likelihood
    fitted_p = model.click_probability(item, position)
    assert np.median(np.abs(fitted_p / (theta[position] * gamma[item]) - 1)) < 0.1
    per_position = np.bincount(position, weights=click) / np.bincount(position)
    assert log_likelihood(model.click_probability(item, position), click) > log_likelihood(per_position[position],
                                                                                           click)


@pytest.mark.parametrize("decay", [1.0, 1.5])
def test_pbm_em_recovers_the_decay_from_a_log_in_policy_order(tmp_path, decay):
    """No randomisation: the blends of a uniform-grid policy put items at many positions, and EM separates
    position from item (attraction in the simulator also depends on the shopper, which the PBM's one
    gamma per item averages over). A steeper decay is told apart."""
    _, _, impressions = _simulated_impressions(tmp_path, shuffle=False, examination_decay=decay)
    bias, _ = pbm_em(impressions["item_id"].to_numpy(), impressions["position"].to_numpy(),
                     impressions["click"].to_numpy())
    assert bias.decay() == pytest.approx(decay, abs=0.06)


def test_statistics_by_hand():
    from fusionsim.envs.calibration.statistics import compare_statistics, log_statistics, ratio_estimate

    # ratio of sums 3 / 4 over units (1, 2), (2, 2): residuals 1 - 1.5 = -0.5, 2 - 1.5 = 0.5; se = sqrt(0.5) / 4
    estimate = ratio_estimate(np.array([1.0, 2.0]), np.array([2.0, 2.0]))
    assert estimate.value == 0.75 and estimate.se == pytest.approx(np.sqrt(0.5) / 4)
    log = pd.DataFrame({"request_id": [0, 0, 1, 1], "position": [0, 1, 0, 1], "click": [1, 0, 1, 1],
                        "surface": ["feed", "feed", "search", "search"], "purchase": [1, 0, 0, 0],
                        "session_id": [5, 5, 5, 5], "timestamp": [0.1, 0.1, 1.8, 1.8], "user_id": [3, 3, 3, 3]})
    s = log_statistics(log)
    assert s["CTR at position 1"].value == 1.0 and s["CTR at position 2"].value == 0.5
    assert s["CTR on feed"].value == 0.5 and s["CTR on search"].value == 1.0
    # 0.1 days = 02:24, 1.8 days = 19:12
    assert s["CTR at hours 00-06"].value == 0.5 and s["CTR at hours 18-24"].value == 1.0
    assert s["clicks per request"].value == 1.5 and s["purchases per click"].value == pytest.approx(1 / 3)
    assert s["requests per session"].value == 2.0 and s["share of sessions of 2-3 requests"].value == 1.0
    rows = compare_statistics(s, s)
    assert all(r.verdict == "consistent" and r.difference == 0 for r in rows)


def test_fidelity_passes_its_own_scenario_and_detects_a_steeper_position_decay(tmp_path):
    import yaml
    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli

    def scenario_file(name, decay):
        scenario = small_scenario(**{"behaviour.examination_decay": decay})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
        return path

    same, steeper = scenario_file("same", 1.0), scenario_file("steeper", 1.5)
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--scenario", str(same), "--requests", "16000", "--slots", "500",
                                 "--policy", "uniform-grid", "--out", str(tmp_path / "log")])
    assert result.exit_code == 0, result.output
    for name, scenario in (("own", same), ("perturbed", steeper)):
        result = runner.invoke(cli, ["fidelity", "--scenario", str(scenario), "--logs", str(tmp_path / "log"),
                                     "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    import json
    own = json.loads((tmp_path / "own" / "fidelity.json").read_text())
    perturbed = json.loads((tmp_path / "perturbed" / "fidelity.json").read_text())
    # about 27 statistics at 95%: more than 4 differ by chance alone with probability about 4%
    assert len(own["statistics"]) >= 25 and len(own["differing"]) <= 4, own["differing"]
    lower = [f"CTR at position {k}" for k in range(3, 11)]
    assert set(lower) <= set(perturbed["differing"]), perturbed["differing"]
    assert all(row["difference"] < 0 for row in perturbed["statistics"] if row["statistic"] in lower)
    assert (tmp_path / "perturbed" / "ctr_by_position.png").read_bytes()[:4] == b"\x89PNG"
    assert "statistics differ at 95%" in (tmp_path / "perturbed" / "fidelity.md").read_text()
    bad = runner.invoke(cli, ["fidelity", "--logs", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output == (f"Error: --logs {tmp_path / 'none'} does not exist or is not a folder; "
                                                 "give a fusionsim simulate run folder\n")


def test_calibrate_recovers_known_behaviour_and_passes_the_held_out_check(tmp_path):
    """A log of a shop with attraction_bias -4.0, purchase_bias -5.0 and examination_decay 1.3, calibrated on
    top of the same shop with the defaults (-4.8, -5.5, 1.0): all three come back within tolerance, and the
    fitted scenario reproduces the held-out requests."""
    import json

    import yaml
    from click.testing import CliRunner

    from fusionsim.envs.scenario import load_scenario
    from fusionsim.experiments.cli import cli

    truth = {"attraction_bias": -4.0, "purchase_bias": -5.0, "examination_decay": 1.3}
    start = small_scenario()
    assert (start.behaviour.attraction_bias, start.behaviour.purchase_bias) == (-4.8, -5.5)
    paths = {}
    for name, scenario in (("truth", small_scenario(**{f"behaviour.{k}": v for k, v in truth.items()})),
                           ("start", start)):
        raw = scenario.model_dump(mode="json")
        if name == "truth":  # and it arrives otherwise: other devices, new shoppers who search more
            raw["traffic"]["device_shares"] = {"desktop": 0.6, "mobile": 0.25, "app": 0.15}
            raw["world"]["segments"]["new"]["search_share"] = 0.6
            for params in raw["world"]["segments"].values():  # and leaves sooner
                params["leave_bias"] += 0.5
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--scenario", str(paths["truth"]), "--requests", "12000", "--slots",
                                 "500", "--policy", "uniform-grid", "--out", str(tmp_path / "log")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "calibrated"
    result = runner.invoke(cli, ["calibrate", "--logs", str(tmp_path / "log"), "--scenario", str(paths["start"]),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    fitted = json.loads((out / "fitted.json").read_text())
    assert fitted["fitted"]["examination_decay"] == pytest.approx(1.3, abs=0.08)
    assert fitted["fitted"]["attraction_bias"] == pytest.approx(-4.0, abs=0.15)
    assert fitted["fitted"]["purchase_bias"] == pytest.approx(-5.0, abs=0.2)
    assert len(fitted["fidelity"]["differing"]) <= 4, fitted["fidelity"]["differing"]
    assert fitted["leave_bias_shift"] == pytest.approx(0.5, abs=0.25), fitted["matched"]
    assert set(fitted["matched"]) == {"CTR at position 1", "purchases per click", "requests per session"}
    mix = fitted["arrival_mix"]
    for device, share in {"desktop": 0.6, "mobile": 0.25, "app": 0.15}.items():
        assert abs(mix["device_shares"][device]["value"] - share) < 3 * mix["device_shares"][device]["se"]
    for segment, share in {"new": 0.6, "casual": 0.35, "loyal": 0.45, "bargain": 0.35}.items():
        assert abs(mix["search_share"][segment]["value"] - share) < 3 * mix["search_share"][segment]["se"], segment
    assert mix["start"]["device_shares"] == {"desktop": 0.3, "mobile": 0.5, "app": 0.2} and mix["not_fitted"] == []
    assert fitted["position_bias"]["method"] == "pbm-em" and "randomised bucket" in result.output
    assert fitted["click_model"]["pbm"] > fitted["click_model"]["per_position_ctr"]
    assert "Held-out log-likelihood per impression" in (out / "fidelity.md").read_text()
    # the fitted scenario is a scenario every command loads
    calibrated = load_scenario(out / "scenario.yaml")
    assert calibrated.behaviour.attraction_bias == pytest.approx(fitted["fitted"]["attraction_bias"])
    assert calibrated.traffic.device_shares["desktop"] == pytest.approx(mix["device_shares"]["desktop"]["value"])
    assert calibrated.world.segments["new"].search_share == pytest.approx(mix["search_share"]["new"]["value"])
    result = runner.invoke(cli, ["simulate", "--scenario", str(out / "scenario.yaml"), "--requests", "1000",
                                 "--out", str(tmp_path / "on_fitted")])
    assert result.exit_code == 0, result.output
    # ... and compare and ab-test run on it unchanged (arms trained on the log the scenario was fitted to)
    fitted_file, arms = str(out / "scenario.yaml"), str(tmp_path / "arms")
    result = runner.invoke(cli, ["train-base", "--scenario", fitted_file, "--logs", str(tmp_path / "log"),
                                 "--models", "popularity,content", "--out", arms])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["compare", "--scenario", fitted_file, "--base", arms,
                                 "--methods", "best-single-arm,best-static-blend,linucb", "--requests", "1280",
                                 "--search-requests", "256", "--slots", "256", "--grid-resolution", "2", "--out",
                                 str(tmp_path / "compare")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "compare" / "comparison.json").read_text())["scenario"] == calibrated.name
    result = runner.invoke(cli, ["ab-test", "--scenario", fitted_file, "--policies",
                                 "popularity,new_arrivals", "--users", "300", "--days", "0.2", "--pre-days", "0.1",
                                 "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(cli, ["calibrate", "--logs", str(tmp_path / "log"), "--holdout", "1", "--out",
                              str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output == "Error: --holdout must be in (0, 1); got 1.0\n"


def test_solve_moments_finds_a_known_root_in_a_few_evaluations():
    from fusionsim.experiments.calibrate import CalibrateError, solve_moments

    def moments(x):  # two coupled increasing moments, like CTR and purchases per click in their biases
        return np.array([1 / (1 + np.exp(-x[0])) + 0.05 * x[1], 1 / (1 + np.exp(-x[1] - 0.1 * x[0]))])

    truth = np.array([-1.0, -2.5])
    x, at, evaluations = solve_moments(moments, moments(truth), np.array([0.0, 0.0]), tolerance=1e-6)
    np.testing.assert_allclose(x, truth, atol=1e-5)
    np.testing.assert_allclose(at, moments(truth), atol=1e-6)
    assert evaluations <= 25
    with pytest.raises(CalibrateError, match="do not move with the parameters"):
        solve_moments(lambda x: np.array([0.3, 0.1]), np.array([0.5, 0.2]), np.zeros(2), 1e-3)


def test_arrival_mix_fits_shares_by_hand_and_leaves_foreign_names_alone():
    import pandas as pd

    from fusionsim.envs.calibration.arrival import arrival_mix

    # sessions 0, 1 on mobile, 2 on app; shopper 0 (new) searches once in two requests, shopper 1 (loyal) never
    log = pd.DataFrame({"request_id": [0, 0, 1, 2, 3], "session_id": [0, 0, 0, 1, 2], "user_id": [0, 0, 0, 1, 1],
                        "device": ["mobile"] * 4 + ["app"], "surface": ["search", "search", "feed", "feed", "feed"],
                        "segment": ["new", "new", "new", "loyal", "loyal"], "position": [0, 1, 0, 0, 0]})
    mix = arrival_mix(log)
    assert {d: e.value for d, e in mix.device_shares.items()} == {"desktop": 0.0, "mobile": 2 / 3, "app": 1 / 3}
    assert {s: e.value for s, e in mix.search_shares.items()} == {"new": 0.5, "loyal": 0.0}
    assert mix.not_fitted == ["world.segments.casual.search_share: the log has no request of segment 'casual'",
                              "world.segments.bargain.search_share: the log has no request of segment 'bargain'"]
    foreign = arrival_mix(log.assign(device="tv", surface="home", segment="vip"))
    assert foreign.device_shares is None and foreign.search_shares == {}
    assert foreign.not_fitted == [
        "traffic.device_shares: the log's devices ['tv'] are not the scenario's ['desktop', 'mobile', 'app']",
        "world.segments.*.search_share: the log's surfaces ['home'] are not the scenario's ['feed', 'search']"]
    vip = arrival_mix(log.assign(segment=["new", "new", "new", "vip", "vip"]))
    assert vip.not_fitted[-1] == ("the log's segments ['vip'] are not the scenario's ['new', 'casual', 'loyal', "
                                  "'bargain']: their requests fit no segment's search share")


def test_session_fields_leave_the_world_and_its_arms_alone():
    from fusionsim.envs.scenario import scenario_to_dict
    from fusionsim.envs.shop import same_world, world_signature

    scenario = small_scenario()
    stored = {**world_signature(scenario), "world": scenario_to_dict(scenario)["world"]}  # as stored before
    assert "search_share" in stored["world"]["segments"]["new"] and same_world(stored, scenario)
    raw = scenario_to_dict(scenario)
    raw["world"]["segments"]["new"]["search_share"] = 0.9
    raw["world"]["segments"]["loyal"]["leave_bias"] = -1.0
    from fusionsim.envs.scenario import parse_scenario
    assert same_world(stored, parse_scenario(raw, "x"))
    raw["world"]["segments"]["new"]["activity"] = 2.0  # who arrives how often is the world
    assert not same_world(stored, parse_scenario(raw, "x"))


def test_click_rates_by_price_band_by_hand():
    import pandas as pd

    from fusionsim.envs.calibration.statistics import log_statistics

    log = pd.DataFrame({"request_id": [0, 0, 0, 1, 1, 1], "timestamp": [0.1] * 6, "user_id": [0, 0, 0, 1, 1, 1],
                        "surface": ["feed"] * 6, "position": [0, 1, 2, 0, 1, 2], "item_id": [0, 1, 2, 3, 4, 5],
                        "click": [1, 0, 1, 0, 0, 1], "log_relative_price": [-0.5, 0.0, 0.5, -0.31, 0.3, 0.9]})
    statistics = log_statistics(log)
    # cheap: < -0.3 (items 0, 3: one click); mid: [-0.3, 0.3] (items 1, 4: none); dear: > 0.3 (items 2, 5: two)
    assert [statistics[f"CTR at price {band}"].value for band in ("cheap", "mid", "dear")] == [0.5, 0.0, 1.0]
    assert "CTR at price cheap" not in log_statistics(log.drop(columns="log_relative_price"))
