"""The learned arms and train-base: quality on a small shop, round trips, determinism, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from fusionsim.envs.logs import SURFACES
from fusionsim.envs.scenario import DEVICES, SEGMENTS
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments.cli import cli
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.recommenders import ContentBased, InteractionTableError, MatrixFactorization, RequestBatch, SequenceModel
from fusionsim.recommenders.data import clicks_from_log, eval_requests_from_log, recent_items_before
from fusionsim.recommenders.evaluation import ranking_metrics
from tests.conftest import small_scenario

FAST = {"epochs": 3, "progress": False, "device": "cpu", "batch_size": 2048}
ONE_EPOCH = {**FAST, "epochs": 1}
"""For tests of files, determinism and serving, where how well the arm learned does not matter."""


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The default catalog with 5,000 shoppers, and 80,000 requests logged under the uniform policy."""
    scenario = small_scenario(**{"world.n_items": 4000, "world.n_users": 5000, "world.n_top_categories": 8,
                                 "world.n_leaf_per_top": 5, "world.n_brands": 200})
    out = tmp_path_factory.mktemp("log")
    run_policy(SimulateConfig(requests=80_000, seed=1, slots=512), scenario, out, progress=False)
    world, _ = make_shop(scenario)
    log = pd.read_parquet(out / "logs")
    clicks = clicks_from_log(log)
    split = log["t"].quantile(0.8)
    train = pd.concat([world.history, clicks[clicks["t"] < split]], ignore_index=True)
    known = pd.concat([world.history, clicks], ignore_index=True)
    test = eval_requests_from_log(log[log["t"] >= split], known, SEGMENTS, SURFACES, DEVICES)
    late = log[(log["t"] >= log["t"].quantile(0.7)) & (log["t"] < split)]
    validation = eval_requests_from_log(late, known, SEGMENTS, SURFACES, DEVICES)
    return scenario, out, world, train, test, validation


def _requests(users, recent):
    return RequestBatch.feed(np.asarray(users), np.asarray(recent))


def _four_items():
    """Items 0, 1 in leaf word 10 (top word 0); 2, 3 in leaf word 11 (top word 1); brands 20-21, attributes
    30-31; prices 10, 100, 10, 100."""
    from fusionsim.recommenders.base import ItemTable
    tokens = np.array([[0, 10, 20, 30], [0, 10, 21, 31], [1, 11, 21, 30], [1, 11, 21, 31]], dtype=np.int32)
    return ItemTable(item_id=np.arange(4, dtype=np.int32), top=tokens[:, 0], leaf=tokens[:, 1] - 10,
                     brand=tokens[:, 2] - 20, price=np.array([10, 100, 10, 100], np.float32), tokens=tokens,
                     launch_day=np.zeros(4, np.float32), vocab_size=32)


def test_clicks_and_recent_items_from_a_log():
    log = pd.DataFrame({"user_id": [4, 4, 7], "t": [1.0, 2.0, 2.0], "segment": ["new"] * 3,
                        "surface": ["feed"] * 3, "device": ["app"] * 3, "query": [[-1, -1, -1]] * 3,
                        "session_step": [0, 1, 0], "slate": [[10, 11, 12], [13, 14, 15], [16, 17, 18]],
                        "clicks": [[0, 1, 1], [1, 0, 0], [0, 0, 0]], "purchased": [[0, 1, 0], [0, 0, 0], [0, 0, 0]]})
    clicks = clicks_from_log(log)
    assert clicks.to_dict("list") == {"user_id": [4, 4, 4], "item_id": [11, 12, 13], "t": [1.0, 1.0, 2.0],
                                      "purchase": [True, False, False]}
    recent = recent_items_before(clicks, np.array([4, 4, 4, 7]), np.array([1.0, 1.5, 3.0, 3.0]), n=3)
    np.testing.assert_array_equal(recent, [[-1, -1, -1], [12, 11, -1], [13, 12, 11], [-1, -1, -1]])
    data = eval_requests_from_log(log, clicks, SEGMENTS, SURFACES, DEVICES)
    np.testing.assert_array_equal(data.targets, [[11, 12], [13, -1]])
    np.testing.assert_array_equal(data.requests.recent_items[:, :2], [[-1, -1], [12, 11]])


def test_mf_and_sequence_beat_popularity_on_a_small_shop(logged):
    _, _, world, train, test, validation = logged
    items = world.catalog.public()
    from fusionsim.recommenders import Popularity
    fast = {**FAST, "batch_size": 1024, "lr": 1e-2}
    ndcg = {}
    for model in (Popularity(), MatrixFactorization(train={**fast, "epochs": 3}),
                  SequenceModel(train={**fast, "batch_size": 512, "epochs": 6})):
        model.fit(train, items, **({} if model.name == "popularity" else {"validation": validation}))
        ndcg[model.name] = ranking_metrics(model, test, items)[1].mean()
    assert ndcg["mf"] > ndcg["popularity"] + 0.01, ndcg
    assert ndcg["sequence"] > ndcg["popularity"], ndcg


def test_content_ranks_by_query_history_and_price():
    items = _four_items()
    model = ContentBased(price_weight=0.0).fit(None, items)
    search = _requests([0], [[-1] * 8])
    search.query = np.array([[1, 11, -1]], dtype=np.int32)
    scores = model.score(search, np.array([[0, 1, 2, 3]], dtype=np.int32))[0]
    assert min(scores[2:]) > max(scores[:2])  # the query's leaf first
    history = model.score(_requests([0], [[0] + [-1] * 7]), np.array([[1, 2, 3]], dtype=np.int32))[0]
    assert history[0] > history[1] > history[2]  # items sharing more words with the last click first
    priced = ContentBased(price_weight=1.0).fit(None, items)
    cheap = priced.score(_requests([0], [[2] + [-1] * 7]), np.array([[0, 1]], dtype=np.int32))[0]
    assert cheap[0] > cheap[1]  # a shopper of cheap items gets the cheap one first


def test_content_scores_equal_hand_computed_cosines():
    items = _four_items()
    # idf = log(4 / (1 + df)) + 1: words in two items -> a, brand 20 (one item) -> c, brand 21 (three) -> 1
    a, c = np.log(4 / 3) + 1, np.log(2) + 1
    norm0, norm_other = np.sqrt(3 * a * a + c * c), np.sqrt(3 * a * a + 1)
    model = ContentBased(price_weight=0.0).fit(None, items)
    history = model.score(_requests([0], [[0] + [-1] * 7]), np.array([[0, 1, 2]], dtype=np.int32))[0]
    np.testing.assert_allclose(history, [1.0, 2 * a * a / (norm0 * norm_other), a * a / (norm0 * norm_other)],
                               rtol=1e-6)
    search = _requests([0, 0], [[-1] * 8, [-1] * 8])
    search.query = np.array([[1, 11, -1], [1, 1, 11]], dtype=np.int32)  # a repeated word counts once
    query = model.score(search, np.array([[2, 0], [2, 0]], dtype=np.int32))
    np.testing.assert_allclose(query, [[2 * np.sqrt(2) * a / norm_other, 0.0]] * 2, rtol=1e-6, atol=1e-7)
    priced = ContentBased(price_weight=1.0).fit(None, items)
    cheap = priced.score(_requests([0], [[2] + [-1] * 7]), np.array([[1]], dtype=np.int32))[0, 0]
    np.testing.assert_allclose(cheap, 1 / norm_other**2 - np.log(10), rtol=1e-6)


def test_dot_scores_equal_direct_dot_products_with_fallback():
    from fusionsim.recommenders.training import dot_scores
    rng = np.random.default_rng(0)
    queries, table, bias = rng.normal(size=(5, 8)), rng.normal(size=(30, 8)), rng.normal(size=30)
    ids = rng.integers(0, 30, (5, 7)).astype(np.int32)
    ids[0, :3] = 4  # repeated candidates
    ids[1, 0], ids[2, 6] = -1, 30  # unknown items
    known = (ids >= 0) & (ids < 30)
    safe = np.where(known, ids, 0)
    expected = np.where(known, np.einsum("bd,bcd->bc", queries, table[safe]) + bias[safe], -9.0)
    q, t, b = (torch.tensor(x, dtype=torch.float32) for x in (queries, table, bias))
    got = dot_scores(q, t, ids, b, fallback=-9.0)
    assert got.dtype == np.float32 and got.shape == (5, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    no_bias = dot_scores(q, t, safe)
    np.testing.assert_allclose(no_bias, np.einsum("bd,bcd->bc", queries, table[safe]), rtol=1e-5, atol=1e-5)


def test_gru_serving_step_equals_the_training_gru():
    from fusionsim.recommenders.sequence import GRUModule
    torch.manual_seed(0)
    module = GRUModule(50, 16).eval()
    items, h = torch.randint(0, 51, (7,)), torch.randn(7, 16)
    with torch.no_grad():
        reference = module.gru(module.item(items)[:, None, :], h[None])[1][0]
        assert torch.equal(module.step(items, h), reference)


@pytest.mark.parametrize("make", [lambda: MatrixFactorization(train=ONE_EPOCH), lambda: ContentBased(),
                                  lambda: SequenceModel(train=ONE_EPOCH)], ids=["mf", "content", "sequence"])
def test_round_trip_determinism_and_unknown_ids(make, logged, tmp_path):
    _, _, world, train, test, _ = logged
    items = world.catalog.public()
    train = train.iloc[: len(train) // 4]  # files and determinism, not quality: a quarter of the data will do
    model = make().fit(train, items)
    again = make().fit(train, items)
    path = tmp_path / "arm.pt"
    model.save(path)
    assert set(torch.load(path, weights_only=True)) == {"name", "config", "state"}
    loaded = type(model).load(path)
    part = test.subset(np.arange(50))
    candidates = np.tile(np.arange(200, dtype=np.int32), (50, 1))
    for m in (model, again, loaded):
        m.reset_state()
    first = model.score(part.requests, candidates)
    np.testing.assert_array_equal(first, again.score(part.requests, candidates))  # CPU training is deterministic
    np.testing.assert_array_equal(first, loaded.score(part.requests, candidates))  # save/load round trip
    # unknown shoppers and items, and recent items beyond the catalog, get a fallback, not an IndexError
    strange = _requests([10**7, 0], [[10**6] + [-1] * 7, [5] + [-1] * 7])
    scores = model.score(strange, np.array([[0, 1, 10**6], [2, -3, 10**7]], dtype=np.int32))
    assert scores.shape == (2, 3) and np.isfinite(scores).all()


def test_sequence_serving_is_incremental_and_matches_a_full_pass(logged):
    _, _, world, train, _, _ = logged
    model = SequenceModel(train=ONE_EPOCH).fit(train, world.catalog.public())
    fresh = SequenceModel(incremental=False, train=ONE_EPOCH)
    fresh.load_state(model.state())
    candidates = np.tile(np.arange(100, dtype=np.int32), (2, 1))
    history = [[-1] * 8, [-1] * 8]
    for clicks in ([5, 9], [17, 3], [40, 41]):  # two shoppers click one item per request
        history = [[clicks[0]] + history[0][:7], [clicks[1]] + history[1][:7]]
        request = _requests([1, 2], history)
        np.testing.assert_allclose(model.score(request, candidates), fresh.score(request, candidates), atol=1e-5)
    assert model._cache_recent[1, 0] == 40  # the cached state follows the latest click


def test_sequence_cache_keeps_the_last_request_of_a_repeated_shopper():
    from fusionsim.recommenders.sequence import GRUModule
    torch.manual_seed(0)
    model = SequenceModel(dim=64, train=FAST)
    model.load_state({k: v.numpy() for k, v in GRUModule(200, 64).state_dict().items()})
    rng = np.random.default_rng(0)
    for _ in range(5):  # a write that keeps an arbitrary row shows up in some batches, not in every one
        users = rng.integers(0, 40, 4096)  # every shopper in about 100 rows, each with other recent items
        recent = rng.integers(0, 200, (4096, 8))
        recent[:, 5:] = -1
        with torch.no_grad():
            h = model.states(_requests(users, recent))
        last = {user: row for row, user in enumerate(users)}
        for user, row in last.items():
            assert (model._cache_recent[user] == recent[row]).all()
            assert torch.equal(model._cache_h[user], h[row])


BAD_LOGS = [
    (lambda log: log.iloc[:0], "request log is empty: nothing to train on"),
    (lambda log: log.drop(columns="clicks"), "request log has no column 'clicks'"),
]


@pytest.mark.parametrize("mutate, message", BAD_LOGS, ids=["empty", "no clicks column"])
def test_malformed_logs_name_the_column(mutate, message, logged):
    _, out, _, _, _, _ = logged
    log = mutate(pd.read_parquet(out / "logs"))
    with pytest.raises(InteractionTableError) as err:
        clicks_from_log(log)
    assert str(err.value).startswith(message)


def test_train_base_cli_writes_arms_that_plug_into_the_env(logged, tmp_path):
    scenario, out, _, _, _, _ = logged
    path = tmp_path / "small.yaml"
    import yaml
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    arms = tmp_path / "arms"
    result = CliRunner().invoke(cli, ["train-base", "--scenario", str(path), "--logs", str(out), "--out", str(arms),
                                      "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((arms / "metrics.json").read_text())
    assert set(metrics["models"]) == {"popularity", "mf", "content", "sequence"}
    assert "| sequence |" in (arms / "report.md").read_text()
    world, loaded = make_shop(scenario, base=arms)
    assert [a.name for a in loaded] == ["popularity", "mf", "content", "sequence"]
    sim = BatchedSimulator(world, loaded, n_slots=64)
    sim.reset(seed=0)
    step = sim.step(np.full((64, 4), 0.25, dtype=np.float32))
    assert len(step.arm_scores) == 4 and step.slate.shape == (64, 10)
    run = CliRunner().invoke(cli, ["simulate", "--scenario", str(path), "--base", str(arms), "--policy", "sequence",
                                   "--requests", "500", "--out", str(tmp_path / "sim")])
    assert run.exit_code == 0, run.output
    assert "weights_sequence" in pd.read_parquet(tmp_path / "sim" / "logs").columns


@pytest.mark.parametrize("args, message", [
    (["--models", "mf,knn"], "Error: --models 'mf,knn': unknown model knn; choose from popularity, mf, content, "
                             "sequence"),
    (["--logs", "nowhere"], "Error: --logs nowhere does not exist or is not a folder; give a fusionsim simulate run "
                            "folder"),
])
def test_train_base_bad_arguments(args, message, tmp_path):
    base_args = ["train-base", "--logs", "nowhere", "--out", str(tmp_path / "a")]
    result = CliRunner().invoke(cli, base_args + args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == message


def test_arms_of_another_world_are_refused(logged, tmp_path):
    scenario, out, _, _, _, _ = logged
    result = CliRunner().invoke(cli, ["simulate", "--base", str(tmp_path), "--requests", "10",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --base {tmp_path} holds no trained arms (arms.json is missing); "
                                     "make one with fusionsim train-base")
