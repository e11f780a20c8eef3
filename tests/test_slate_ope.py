"""Ranking-level OPE (``fusionsim ope --rerank``): the re-ranking strategy, the slate arrays of a hand-made log,
the command on simulated and impression logs against the simulated truth, and bad input."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.stacking.signals import shown_ranks_and_zscores
from fusionsim.envs.strategies import STACKER, RerankedSlate, WeightedBlend, rerank_order
from fusionsim.experiments.cli import cli
from fusionsim.experiments.evaluation import OPEInputError
from fusionsim.experiments.evaluation.slate import SlateCascadeDoublyRobust, SlateIndependentIPS
from fusionsim.experiments.slate_ope import LoggedSlates, effective_sample_sizes, shuffle_propensities, slate_data
from tests.conftest import write_small_scenario


def test_rerank_order_puts_higher_scores_first_and_breaks_ties_by_item():
    scores = np.array([[0.1, 0.9, 0.5], [1.0, 2.0, 1.0]])
    items = np.array([[7, 8, 9], [30, 10, 20]])
    assert rerank_order(scores, items).tolist() == [[1, 2, 0], [1, 2, 0]]  # tie 1.0: item 20 before 30


# Two logged slates of three items. Policy scores give its order; by hand:
# slate 0: items [5, 6, 7], scores [0.2, 0.9, 0.1] -> the policy shows [6, 5, 7]: place of each logged item [1, 0, 2]
# slate 1: items [1, 2, 3], scores [3.0, 2.0, 1.0] -> the policy shows them as logged: places [0, 1, 2]
HAND = LoggedSlates(items=np.array([[5, 6, 7], [1, 2, 3]]), reward=np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
                    order_scores=np.array([[0.2, 0.9, 0.1], [3.0, 2.0, 1.0]]), logging=shuffle_propensities(2, 3))


def test_slate_arrays_of_a_hand_made_log():
    data = slate_data(HAND)
    assert data["evaluation_policy_pscore_item_position"].tolist() == [0, 0, 1, 1, 1, 1]
    assert data["evaluation_policy_pscore_cascade"].tolist() == [0, 0, 0, 1, 1, 1]
    assert data["evaluation_policy_pscore"].tolist() == [0, 0, 0, 1, 1, 1]
    assert data["pscore_cascade"].tolist() == pytest.approx([1 / 3, 1 / 6, 1 / 6] * 2)
    assert data["pscore"].tolist() == pytest.approx([1 / 6] * 6)
    # Cascade-DR: given the logged items above it, the policy shows the best placed of the rest
    assert data["action"].tolist() == [1, 0, 2, 0, 1, 2]
    assert data["evaluation_policy_action_dist"].argmax(axis=1).tolist() == [0, 0, 2, 0, 1, 2]
    # IIPS by hand: w(l) = 3 where the policy shows the logged item at l: (1 * 3) + (0 + 3 + 0), over 2 slates
    assert SlateIndependentIPS(len_list=3).estimate_policy_value(**data) == pytest.approx((3 + 3) / 2)
    # Cascade-DR by hand, Q-hat_l = mean logged reward from l down: [1.5, 1.0, 0.5]; w(1:0) = 1
    # slate 0: w(1:l) = [0, 0, 0] -> Q_1 = 1.5
    # slate 1: w(1:l) = [3, 6, 6] -> 3 (0 - 1.5) + 1.5 + 6 (1 - 1.0) + 3 * 1.0 + 6 (0 - 0.5) + 6 * 0.5 = 0
    value = SlateCascadeDoublyRobust(len_list=3, n_unique_action=3).estimate_policy_value(**data)
    assert value == pytest.approx((1.5 + 0.0) / 2)
    ess = effective_sample_sizes(data, 3)
    assert ess["item_position"] == pytest.approx([1.0, 1.0, 2.0]) and ess["slate"] == pytest.approx([1.0] * 3)


def test_shuffle_propensities_are_those_of_a_uniform_order():
    p = shuffle_propensities(1, 4)
    assert p["pscore_cascade"].tolist() == pytest.approx([1 / 4, 1 / 12, 1 / 24, 1 / 24])
    assert p["pscore"][0] == pytest.approx(1 / math.factorial(4))
    assert shuffle_propensities(1, 170)["pscore"][0] > 0
    with pytest.raises(OPEInputError, match="^slates of 171 items: the propensity 1 / 171! of a shuffled slate"):
        shuffle_propensities(1, 171)


def test_a_reranked_slate_shows_the_blends_items_in_the_arms_order(small_shop):
    world, arms = small_shop
    sim = BatchedSimulator(world, arms, n_slots=64, fusion=RerankedSlate(WeightedBlend(), 1))
    sim.reset(seed=5)
    weights = np.full((64, len(arms)), 1.0 / len(arms), dtype=np.float32)
    result = sim.step(weights)
    blended, _ = WeightedBlend().rank(result.candidates, result.excluded, result.arm_scores, result.contexts,
                                      weights, result.slate.shape[1])
    assert (np.sort(blended, axis=1) == np.sort(result.slate, axis=1)).all()  # the blend's items
    assert not (blended == result.slate).all()  # in another order: arm 1's, its best first
    positions = np.argmax(result.candidates[:, None, :] == result.slate[:, :, None], axis=2)
    ranks = shown_ranks_and_zscores([result.arm_scores[1]], positions)[0][0]
    assert (np.diff(ranks, axis=1) > 0).all()
    with pytest.raises(ValueError, match="needs a stacker"):
        RerankedSlate(WeightedBlend(), STACKER)


def test_a_stacker_reranks_served_slates_as_it_scores_their_logged_signals(small, small_shop):
    import torch

    from fusionsim.envs.context import CONTEXT_NAMES
    from fusionsim.envs.shop import world_signature
    from fusionsim.envs.stacking.signals import signals
    from fusionsim.envs.stacking.stacker import Stacker, StackerSpec

    world, arms = small_shop
    stacker = Stacker(StackerSpec(kind="mlp", arm_names=[a.name for a in arms], context_names=list(CONTEXT_NAMES),
                                  slate_size=10, target="clicks", world=world_signature(small)))
    torch.manual_seed(0)
    for parameter in stacker.network.parameters():  # a network whose scores differ between items
        torch.nn.init.normal_(parameter)
    sim = BatchedSimulator(world, arms, n_slots=64, fusion=RerankedSlate(WeightedBlend(), STACKER, stacker))
    sim.reset(seed=3)
    result = sim.step(np.full((64, len(arms)), 1.0 / len(arms), dtype=np.float32))
    positions = np.argmax(result.candidates[:, None, :] == result.slate[:, :, None], axis=2)
    logged = signals(*shown_ranks_and_zscores(result.arm_scores, positions))  # what the log keeps of the items
    scores = stacker.score_signals(logged, result.contexts)
    assert np.unique(scores, axis=None).size > 64 * 5  # not all tied
    assert (rerank_order(scores, result.slate) == np.arange(10)).all()  # the served order is the logged one's


@pytest.fixture(scope="module")
def shuffled_log(tmp_path_factory):
    root = tmp_path_factory.mktemp("slate_ope")
    path = write_small_scenario(root)
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", "uniform-grid", "--shuffle-slates",
                                 "--requests", "8192", "--slots", "256", "--seed", "1", "--out", str(root / "log")])
    assert result.exit_code == 0, result.output
    return root


def test_ope_rerank_by_an_arm_on_a_shuffled_log_covers_the_simulated_truth(shuffled_log):
    root, runner = shuffled_log, CliRunner()
    result = runner.invoke(cli, ["ope", "--logs", str(root / "log"), "--rerank", "popularity",
                                 "--out", str(root / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / "ope" / "metrics.json").read_text())
    assert metrics["family"] == "slate" and metrics["slate_size"] == 10 and metrics["rounds"] == 8192
    assert list(metrics["estimators"]) == ["iips", "sniips", "rips", "snrips", "sips", "snsips", "cascade-dr"]
    truth = metrics["on_policy_truth"]
    for name in ("iips", "sniips"):  # the estimators this log feeds: an item-position weight of 10 at every slot
        r = metrics["estimators"][name]
        assert r["ci_lower"] <= truth <= r["ci_upper"] and r["relative_error"] < 0.1
    assert metrics["estimators"]["sips"]["estimate"] == 0.0  # no shuffle of 10 hits the policy's whole order
    assert metrics["estimators"]["snsips"]["estimate"] is None  # 0 / 0, written as null
    assert metrics["effective_sample_size_by_position"]["slate"] == [0.0] * 10
    assert metrics["thin_weight"] == ["rips", "snrips", "sips", "snsips", "cascade-dr"]  # a shuffle of 10 items
    assert metrics["estimators"]["iips"]["smallest_effective_sample_size"] > 0.05 * 8192
    assert "too little weight to trust (see report.md): rips, snrips, sips, snsips, cascade-dr" in result.output
    # the truth is one request re-ranked on the logged states; deployed for whole sessions it differs
    assert metrics["deployed_value"] > 0 and metrics["deployed_value"] != truth
    report = (root / "ope" / "report.md").read_text()
    assert "| iips |" in report and "re-ranked by popularity" in report
    assert "deployed" in report and "simulated truth" in report
    stored = yaml.safe_load((root / "ope" / "config.yaml").read_text())
    assert stored["args"]["rerank"] == "popularity" and stored["args"]["estimators"][0] == "iips"
    assert (root / "ope" / "complete.json").is_file()


def test_ope_rerank_by_a_stacker_trained_on_another_log(shuffled_log):
    root, runner = shuffled_log, CliRunner()
    result = runner.invoke(cli, ["simulate", "--scenario", str(root / "small.yaml"), "--policy", "uniform-grid",
                                 "--shuffle-slates", "--requests", "4096", "--slots", "256", "--seed", "2",
                                 "--out", str(root / "training_log")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train-stacker", "--logs", str(root / "training_log"), "--kind", "logistic",
                                 "--epochs", "2", "--out", str(root / "stacker")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["ope", "--logs", str(root / "log"), "--rerank", "stacker", "--policy",
                                 str(root / "stacker"), "--estimators", "iips,cascade-dr", "--out", str(root / "s")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / "s" / "metrics.json").read_text())
    r = metrics["estimators"]["iips"]
    assert r["ci_lower"] <= metrics["on_policy_truth"] <= r["ci_upper"]
    assert "the stacker" in metrics["policy"] and list(metrics["estimators"]) == ["iips", "cascade-dr"]
    # a stacker given as a weight policy is pointed to --rerank
    result = runner.invoke(cli, ["ope", "--logs", str(root / "log"), "--policy", str(root / "stacker"),
                                 "--out", str(root / "w")])
    assert result.exit_code == 2 and result.output.strip() == (
        f"Error: --policy {root / 'stacker'} is a train-stacker run: a stacker ranks items, so evaluate it as a "
        f"re-ranking of the logged slates with --rerank stacker --policy {root / 'stacker'}")


def test_ope_rerank_on_an_impression_log_by_hand(tmp_path):
    # two requests of two items; the logger showed each order with probability 1/2 (so 1/2 per item-position)
    table = pd.DataFrame({"request_id": [0, 0, 1, 1], "timestamp": [0.0, 0.0, 0.1, 0.1], "user_id": [1, 1, 2, 2],
                          "surface": ["feed"] * 4, "position": [0, 1, 1, 0], "item_id": [10, 11, 12, 13],
                          "click": [1, 0, 1, 1], "position_propensity": [0.5] * 4, "slate_propensity": [0.5] * 4,
                          "score_mf": [0.1, 0.7, 0.9, 0.2]})
    table.to_csv(tmp_path / "impressions.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "impressions.csv"), "--rerank", "mf",
                                 "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    # by mf: request 0 shows [11, 10] (logged [10, 11]: no match); request 1 shows [12, 13] (logged by position
    # [13, 12]: no match either) -> every weight 0
    assert metrics["estimators"]["iips"]["estimate"] == 0.0 and metrics["on_policy_truth"] is None
    assert list(metrics["estimators"]) == ["iips", "sniips", "sips", "snsips"]
    assert metrics["estimators"]["sniips"]["estimate"] is None  # 0 / 0: no weight anywhere
    table["score_mf"] = [0.9, 0.1, 0.9, 0.2]  # now request 0 matches; request 1 shows [12, 13], logged [13, 12]
    table.to_csv(tmp_path / "impressions.csv", index=False)
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "impressions.csv"), "--rerank", "mf",
                                 "--estimators", "iips,sips", "--out", str(tmp_path / "ope"), "--overwrite"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    assert metrics["estimators"]["iips"]["estimate"] == pytest.approx((2 * 1 + 2 * 0 + 0 + 0) / 2)
    assert metrics["estimators"]["sips"]["estimate"] == pytest.approx((2 * (1 + 0) + 0) / 2)
    assert "no simulated truth" in (tmp_path / "ope" / "report.md").read_text()


def _impressions(tmp_path, **changes) -> str:
    table = pd.DataFrame({"request_id": [0, 0, 1, 1], "timestamp": [0.0, 0.0, 0.1, 0.1], "user_id": [1, 1, 2, 2],
                          "surface": ["feed"] * 4, "position": [0, 1, 0, 1], "item_id": [10, 11, 12, 13],
                          "click": [1, 0, 1, 1], "position_propensity": [0.5] * 4, "score_mf": [0.1, 0.7, 0.9, 0.2]})
    for name, value in changes.items():
        if value is None:
            table = table.drop(columns=name)
        else:
            table[name] = value
    table.to_csv(tmp_path / "bad.csv", index=False)
    return str(tmp_path / "bad.csv")


@pytest.mark.parametrize("args, message", [
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "mf"],
     "--rerank 'mf' is not allowed: use an arm of the log (popularity, new_arrivals) or stacker with --policy <a "
     "train-stacker run>"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "stacker"],
     "--rerank stacker needs --policy <a train-stacker run>"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "stacker", "--policy", str(tmp)],
     "--policy {tmp} holds no stacker (expected stacker.json and stacker.pt from fusionsim train-stacker)"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "popularity", "--estimators", "dm"],
     "--estimators 'dm': unknown estimator dm; choose from sips, iips, rips, snsips, sniips, snrips, cascade-dr, pi"),
    (lambda root, tmp: ["--obd", str(tmp), "--rerank", "popularity"], "--rerank needs --logs (and no --obd)"),
    (lambda root, tmp: ["--logs", _impressions(tmp), "--rerank", "stacker"],
     "--rerank stacker: --logs {tmp}/bad.csv is an impression log, whose items carry no fusionsim signals (ranks "
     "among all candidates); re-rank it by an arm's score_<arm>"),
    (lambda root, tmp: ["--logs", _impressions(tmp), "--rerank", "content"],
     "--rerank content: --logs {tmp}/bad.csv has no column 'score_content'; its arms' scores are mf"),
    (lambda root, tmp: ["--logs", _impressions(tmp), "--rerank", "mf", "--estimators", "sips"],
     "--estimators sips weights by the column slate_propensity, which --logs {tmp}/bad.csv does not give; use iips, "
     "sniips, pi"),
    (lambda root, tmp: ["--logs", _impressions(tmp, slate_propensity=0.25), "--rerank", "mf", "--estimators",
                        "iips,cascade-dr"],
     "--estimators cascade-dr weights by the propensity of each slate's first items, which only a shuffled simulate "
     "log gives, which --logs {tmp}/bad.csv does not give; use sips, iips, snsips, sniips, pi"),
    (lambda root, tmp: ["--logs", _impressions(tmp, slate_propensity=[0.25, 0.5, 0.25, 0.25]), "--rerank", "mf"],
     "--logs {tmp}/bad.csv: column 'slate_propensity' must be the same on every row of a request (the whole "
     "slate's propensity); request 0 has [0.25, 0.5]"),
    (lambda root, tmp: ["--logs", _impressions(tmp, item_id=[10, 11, 12, 12]), "--rerank", "mf"],
     "--logs {tmp}/bad.csv: request 1 shows item 12 twice; a re-ranking reorders a slate of distinct items"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "popularity", "--policy", str(tmp)],
     "--policy is the stacker of --rerank stacker; --rerank popularity orders by an arm and takes no --policy"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "popularity", "--pscore", "estimated"],
     "--pscore does not apply here: --campaign and --evaluation go with --obd; the slate estimators of --rerank fit "
     "no reward model (--folds) and weight by the logged propensities (--pscore)"),
    (lambda root, tmp: ["--logs", str(root / "log"), "--rerank", "popularity", "--campaign", "men"],
     "--campaign does not apply here: --campaign and --evaluation go with --obd; the slate estimators of --rerank "
     "fit no reward model (--folds) and weight by the logged propensities (--pscore)"),
    (lambda root, tmp: ["--logs", str(root / "ope"), "--rerank", "popularity"],
     "--logs {root}/ope is a ope run; --rerank reads a simulate run (logged with --shuffle-slates) or an impression "
     "log"),
    (lambda root, tmp: ["--logs", _impressions(tmp, position_propensity=None), "--rerank", "mf"],
     "--logs {tmp}/bad.csv holds no logging propensities (columns position_propensity, slate_propensity): the slate "
     "estimators weight by them"),
    (lambda root, tmp: ["--logs", _impressions(tmp, position=[0, 1, 0, 2]), "--rerank", "mf"],
     "--logs {tmp}/bad.csv: request 1 shows positions [0, 2]; the slate estimators need every request to show "
     "positions 0..1, as the first does"),
], ids=["unknown arm", "stacker without policy", "policy not a stacker", "request estimator", "with obd",
        "stacker on impressions", "missing score", "missing slate propensity", "cascade-dr on impressions",
        "slate propensity varies", "repeated item", "policy with an arm", "pscore", "campaign", "not a simulate run",
        "no propensity", "gap in positions"])
def test_bad_rerank_input_is_one_line(shuffled_log, tmp_path, args, message):
    if "{root}/ope" in message and not (shuffled_log / "ope").is_dir():  # an ope run folder, whatever ran first
        assert CliRunner().invoke(cli, ["ope", "--logs", str(shuffled_log / "log"), "--rerank", "popularity",
                                        "--estimators", "iips", "--out", str(shuffled_log / "ope")]).exit_code == 0
    result = CliRunner().invoke(cli, ["ope", *args(shuffled_log, tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "Error: " + message.replace("{tmp}", str(tmp_path)).replace(
        "{root}", str(shuffled_log))
    assert not (tmp_path / "out").exists()


def test_an_unshuffled_log_is_refused(tmp_path):
    path = write_small_scenario(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--requests", "512", "--slots", "256",
                               "--out", str(tmp_path / "log")]).exit_code == 0
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--rerank", "popularity",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --logs {tmp_path / 'log'} was not position-randomised: its logger "
                                     "showed each slate in its own order, so a re-ranking has no logged propensity; "
                                     "log with simulate --shuffle-slates")
