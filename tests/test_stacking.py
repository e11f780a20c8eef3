"""Stacking: the signals a stacker sees, its files, fitting, and training from a log folder alone."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fusionsim.envs.context import CONTEXT_DIM, CONTEXT_NAMES
from fusionsim.envs.fusion import ranking_keys, select_slate
from fusionsim.envs.stacking.signals import (candidate_signals, rank_discount, shown_ranks_and_zscores, signal_names,
                                             signals)
from fusionsim.envs.stacking.stacker import FitConfig, Stacker, StackerError, StackerSpec, fit_stacker
from fusionsim.experiments.cli import cli
from tests.test_simulate_cli import scenario_file  # noqa: F401  (fixture)

WORLD = {"scenario": "small", "seed": 7, "world": {"n_items": 10}, "events": []}


def _spec(kind="logistic", arms=("a", "b"), **changes):
    return StackerSpec(**{"kind": kind, "arm_names": list(arms), "context_names": list(CONTEXT_NAMES),
                          "slate_size": 3, "target": "clicks", "world": WORLD, "hidden": 8, **changes})


def test_ranks_and_zscores_by_hand():
    # scores 3, 1, 2, 2: mean 2, variance 0.5; the tie at 2 goes to the earlier position
    ranks, zscores = shown_ranks_and_zscores([np.array([[3.0, 1.0, 2.0, 2.0]], dtype=np.float32)],
                                             np.array([[0, 1, 2, 3]]))
    np.testing.assert_array_equal(ranks, [[[0, 3, 1, 2]]])
    z = 1.0 / (np.sqrt(0.5) + 1e-6)
    np.testing.assert_allclose(zscores, [[[z, -z, 0.0, 0.0]]], rtol=1e-6)
    np.testing.assert_allclose(rank_discount(np.array([0, 2, 6])), [1.0, 0.5, 1.0 / 3.0], rtol=1e-6)
    assert signal_names(["pop", "mf"]) == ["pop_zscore", "pop_rank", "mf_zscore", "mf_rank"]


def test_logged_signals_equal_the_served_ones():
    rng = np.random.default_rng(3)
    b, c, k = 64, 50, 5
    scores = [rng.standard_normal((b, c)).astype(np.float32), np.round(rng.standard_normal((b, c))).astype(np.float32)]
    positions = np.stack([rng.permutation(c)[:k] for _ in range(b)])
    full = candidate_signals(scores)
    shown = signals(*shown_ranks_and_zscores(scores, positions))
    np.testing.assert_array_equal(shown, np.take_along_axis(full, positions[:, :, None], axis=1))
    # a rank is the number of candidates with a higher key
    keys = ranking_keys(scores[1])
    expected = (keys[:, None, :] > np.take_along_axis(keys, positions, axis=1)[:, :, None]).sum(axis=2)
    np.testing.assert_array_equal(shown_ranks_and_zscores(scores, positions)[0][1], expected)
    # the keys order candidates as the slate is picked: the top k by key are select_slate's slate
    candidates = np.tile(np.arange(c, dtype=np.int32), (b, 1))
    by_key = np.argsort(-keys.astype(np.int64), axis=1)[:, :k]
    np.testing.assert_array_equal(select_slate(candidates, scores[1], k), by_key)


def test_serving_scores_do_not_depend_on_the_block_or_the_gradient_mode():
    """Stacker.score works in blocks of requests with reused activations; a request's scores must be the bytes
    of the network's autograd forward pass, whatever the block and the rows around it (all candidates)."""
    torch.manual_seed(0)
    stacker = Stacker(_spec("mlp", arms=("a", "b", "c")))
    for parameter in stacker.network.parameters():
        torch.nn.init.normal_(parameter)
    rng = np.random.default_rng(5)
    b, c = 300, 40  # more than one block, and a last block of another size
    scores = [rng.standard_normal((b, c)).astype(np.float32) for _ in range(3)]
    contexts = rng.random((b, CONTEXT_DIM)).astype(np.float32)
    served = stacker.score(scores, contexts)
    with torch.enable_grad():
        reference = stacker.network.model(torch.from_numpy(candidate_signals(scores)),
                                          torch.from_numpy(contexts)).detach().numpy()
    np.testing.assert_array_equal(served, reference)
    rows = slice(37, 41)
    np.testing.assert_array_equal(stacker.score([s[rows] for s in scores], contexts[rows]), served[rows])
    positions = np.stack([rng.permutation(c)[:6] for _ in range(b)])  # fewer rows per product: last bits differ
    np.testing.assert_allclose(stacker.score(scores, contexts, positions), np.take_along_axis(served, positions, axis=1),
                               rtol=1e-5, atol=1e-5)


def _synthetic(n=3000, k=3, seed=0):
    """Clicks that depend on arm a's z-score on the search surface and on arm b's on the feed."""
    rng = np.random.default_rng(seed)
    contexts = np.zeros((n, CONTEXT_DIM), dtype=np.float32)
    contexts[:, 0] = 1.0
    search = rng.random(n) < 0.5
    contexts[:, CONTEXT_NAMES.index("surface_search")] = search
    sig = rng.standard_normal((n, k, 4)).astype(np.float32)
    sig[:, :, 1::2] = rng.random((n, k, 2))
    utility = np.where(search[:, None], 2.0 * sig[:, :, 0], 2.0 * sig[:, :, 2]) - 1.0 - 0.5 * np.arange(k)
    labels = (rng.random((n, k)) < 1.0 / (1.0 + np.exp(-utility))).astype(np.float32)
    return contexts, sig, labels


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_fit_learns_which_arm_matters_where(kind):
    contexts, sig, labels = _synthetic()
    stacker, report = fit_stacker(_spec(kind), contexts, sig, labels, FitConfig(epochs=15, seed=0))
    assert report.validation_loss < 0.9 * report.baseline_loss
    assert report.train_requests == 2700 and report.validation_requests == 300 and report.impressions == 9000
    # the learned position effect falls with the position, as the clicks do
    assert np.all(np.diff(stacker.position_logit) < 0)
    # on search arm a's score decides; on the feed arm b's
    probe = np.zeros((2, 2, 4), dtype=np.float32)
    probe[:, 0, 0], probe[:, 1, 2] = 1.0, 1.0  # candidate 0: high on arm a; candidate 1: high on arm b
    ctx = np.zeros((2, CONTEXT_DIM), dtype=np.float32)
    ctx[:, 0], ctx[0, CONTEXT_NAMES.index("surface_search")] = 1.0, 1.0
    with torch.no_grad():
        logits = stacker.network.model(torch.from_numpy(probe), torch.from_numpy(ctx)).numpy()
    assert logits[0, 0] > logits[0, 1] and logits[1, 1] > logits[1, 0]


def test_permutation_importance_finds_which_arm_matters_where():
    from fusionsim.envs.context import CELL_NAMES
    from fusionsim.experiments.explain import permutation_importance

    contexts, sig, labels = _synthetic(n=6000)
    stacker, _ = fit_stacker(_spec("logistic"), contexts, sig, labels, FitConfig(epochs=15, seed=0))
    seen, counts, rise = permutation_importance(stacker, contexts, sig, labels, np.random.default_rng(0))
    assert [CELL_NAMES[c] for c in seen] == ["new/feed/0", "new/search/0"] and counts.sum() == 6000
    # the feed's clicks follow arm b, search's arm a: shuffling that arm costs several times more
    assert rise[0, 1] > 3 * rise[0, 0] > 0 and rise[1, 0] > 3 * rise[1, 1] > 0
    # an arm the model does not read (its weights zeroed) costs exactly nothing when shuffled
    with torch.no_grad():
        stacker.network.model.signal_weights.weight[2:] = 0.0
        stacker.network.model.signal_weights.bias[2:] = 0.0
    rise = permutation_importance(stacker, contexts, sig, labels, np.random.default_rng(0))[2]
    assert np.all(rise[:, 1] == 0.0) and np.all(rise[:, 0] > 0)


def test_fit_is_deterministic():
    contexts, sig, labels = _synthetic(n=600)
    a = fit_stacker(_spec("mlp"), contexts, sig, labels, FitConfig(epochs=2, seed=4))[0]
    b = fit_stacker(_spec("mlp"), contexts, sig, labels, FitConfig(epochs=2, seed=4))[0]
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert torch.equal(x, y), name


def test_save_load_round_trip_and_refusals(tmp_path):
    contexts, sig, labels = _synthetic(n=600)
    stacker = fit_stacker(_spec("mlp"), contexts, sig, labels, FitConfig(epochs=1))[0]
    stacker.save(tmp_path / "s")
    loaded = Stacker.load(tmp_path / "s")
    rng = np.random.default_rng(0)
    scores = [rng.standard_normal((4, 20)).astype(np.float32) for _ in range(2)]
    np.testing.assert_array_equal(loaded.score(scores, contexts[:4]), stacker.score(scores, contexts[:4]))
    some = np.array([[3, 0], [19, 5], [7, 8], [1, 2]])  # scoring a few candidates equals picking from all
    np.testing.assert_allclose(stacker.score(scores, contexts[:4], some),
                               np.take_along_axis(stacker.score(scores, contexts[:4]), some, axis=1), rtol=1e-6)
    assert loaded.spec == stacker.spec and loaded.report == json.loads(json.dumps(stacker.report))

    loaded.check_shop(["a", "b"], WORLD, "--stacker s")
    with pytest.raises(StackerError, match=r"^--stacker s was trained on the arms \[a, b\]; this shop's arms are "
                                           r"\[b, a\] \(names and order must match\)$"):
        loaded.check_shop(["b", "a"], WORLD, "--stacker s")
    other = {**WORLD, "scenario": "default", "seed": 42}
    with pytest.raises(StackerError, match=r"^--stacker s was trained for scenario 'small' \(seed 7\), whose world "
                                           r"differs from this shop's scenario 'default' \(seed 42\)$"):
        loaded.check_shop(["a", "b"], other, "--stacker s")

    (tmp_path / "s" / "stacker.pt").write_bytes(b"not a torch file")
    with pytest.raises(StackerError, match=r"stacker.pt is corrupt or does not fit stacker.json"):
        Stacker.load(tmp_path / "s")
    with pytest.raises(StackerError, match=r"holds no stacker \(expected stacker.json and stacker.pt"):
        Stacker.load(tmp_path / "nothing")


@pytest.mark.parametrize("changes, message", [
    ({"kind": "tree"}, "stacker kind 'tree' is not allowed: use one of logistic, mlp"),
    ({"target": "revenue"}, "stacker target 'revenue' is not allowed: use one of clicks, purchases"),
    ({"slate_size": 0}, "stacker slate_size must be an integer >= 1; got 0"),
    ({"arm_names": []}, "a stacker needs at least one arm"),
])
def test_bad_specs(changes, message):
    with pytest.raises(StackerError, match=f"^{message}$"):
        _spec(**changes)


def test_train_stacker_from_a_log_folder_alone(scenario_file, tmp_path):  # noqa: F811
    """The stacker trains from a simulate run folder: its log and config, nothing of the simulator."""
    runner = CliRunner()
    logs, out = tmp_path / "logs", tmp_path / "stacker"
    result = runner.invoke(cli, ["simulate", "--scenario", str(scenario_file), "--policy", "uniform-grid",
                                 "--requests", "4000", "--slots", "500", "--out", str(logs)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train-stacker", "--logs", str(logs), "--kind", "logistic", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arms"] == ["popularity", "new_arrivals"] and metrics["target"] == "clicks"
    assert metrics["validation_loss"] < metrics["baseline_loss"]
    assert (out / "complete.json").is_file() and (out / "report.md").is_file()
    stacker = Stacker.load(out)
    assert stacker.spec.world["scenario"] == "small" and stacker.spec.slate_size == 10
    # explain reads the held-out requests of the stacker's own log
    result = runner.invoke(cli, ["explain", str(out)])
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "explain.json").read_text())
    assert explained["kind"] == "stacker" and explained["columns"] == ["popularity", "new_arrivals"]
    assert sum(row["requests"] for row in explained["cells"].values()) == metrics["validation_requests"]
    assert (out / "explain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = runner.invoke(cli, ["train-stacker", "--logs", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1, bad.output


def test_stacking_ranks_better_than_the_best_single_arm(scenario_file, tmp_path):  # noqa: F811
    """On a small shop with two trained arms, a stacker fitted on a log of random blends shown in random orders
    earns more clicks per request than either arm alone, on a fresh seed with common random numbers (by
    0.5%: far less than the best static blend's 4%, see README)."""
    from fusionsim.agents import ConstantAction
    from fusionsim.envs.fusion import ActionMapper
    from fusionsim.envs.scenario import load_scenario
    from fusionsim.envs.shop import make_shop
    from fusionsim.envs.strategies import Stacking
    from fusionsim.experiments.online import run_online

    runner = CliRunner()
    for args in (["simulate", "--scenario", scenario_file, "--requests", 4000, "--slots", 500, "--out",
                  tmp_path / "traffic"],
                 ["train-base", "--scenario", scenario_file, "--logs", tmp_path / "traffic", "--models",
                  "popularity,content", "--out", tmp_path / "arms"],
                 ["simulate", "--scenario", scenario_file, "--policy", "uniform-grid", "--base", tmp_path / "arms",
                  "--requests", 20000, "--slots", 500, "--seed", 1, "--shuffle-slates", "--out", tmp_path / "blends"],
                 ["train-stacker", "--logs", tmp_path / "blends", "--kind", "logistic", "--out", tmp_path / "stacker"]):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    world, arms = make_shop(load_scenario(scenario_file), base=tmp_path / "arms")
    stacking = Stacking(Stacker.load(tmp_path / "stacker"))
    stacked = run_online(world, arms, ConstantAction(0), stacking, 20_000, seed=5, slots=500, fusion=stacking).mean
    mapper = ActionMapper("arm", len(arms))
    single = [run_online(world, arms, ConstantAction(a), mapper, 20_000, seed=5, slots=500).mean for a in range(2)]
    assert stacked > max(single), (stacked, single)
