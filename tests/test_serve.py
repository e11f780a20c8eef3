"""``fusionsim serve`` over real loopback HTTP (uvicorn on a thread, and in a child process for the kill test):
rank and reward round trips, a batch, bad input with exact messages, concurrent clients, the join window,
learning with snapshots and restarts, a kill -9, and the replay."""

import json
import multiprocessing
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uvicorn
import yaml

from fusionsim.agents.linear import LinUCB
from fusionsim.envs.calibration.schema import read_impression_log
from fusionsim.envs.context import CONTEXT_NAMES, contexts_from_fields
from fusionsim.experiments.replay import ReplayConfig, run_replay
from fusionsim.experiments.serve import bind
from fusionsim.experiments.serving.app import create_app
from fusionsim.experiments.serving.client import FusionClient
from fusionsim.experiments.serving.decision_log import Decision, decisions_table
from fusionsim.experiments.serving.requests import Outcome, parse_rank
from fusionsim.experiments.serving.service import EVENT_BITS, LOG_SLICE, FusionService, ServeConfig, ServeError
from fusionsim.experiments.train import TrainConfig, train
from tests.conftest import small_scenario

ARMS = ["popularity", "new_arrivals"]
N_CANDIDATES, SLATE = 200, 10


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory) -> Path:
    """A LinUCB with 10% exploration trained for two steps on the small shop: a stochastic policy to serve."""
    out = tmp_path_factory.mktemp("serve") / "linucb"
    train(TrainConfig(agent="linucb", scenario="small", requests=512, slots=256, log_every=256, checkpoint_every=512,
                      oracle_requests=0, epsilon=0.1), small_scenario(), out, progress=False)
    return out


class Server:
    """uvicorn serving a FusionService on a thread, on a free loopback port."""

    def __init__(self, config: ServeConfig, folder: Path) -> None:
        self.service = FusionService(config, folder)
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.service), log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


def request_body(rng: np.random.Generator, **context) -> dict:
    return {"context": {"segment": "loyal", "surface": "search", "device": "app", "hour": 20.5, **context},
            "candidates": rng.choice(10_000, N_CANDIDATES, replace=False).tolist(),
            "scores": {a: rng.normal(size=N_CANDIDATES).tolist() for a in ARMS}, "user_id": 7, "session_id": 3}


def post(url: str, path: str, raw: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=raw, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rank_reward_round_trip_and_the_decision_log(policy_run, tmp_path):
    rng = np.random.default_rng(0)
    body = request_body(rng, session_step=2, history_length=7, session_clicks=1, query_names_leaf=True)
    with Server(ServeConfig(policy=str(policy_run)), tmp_path / "log") as server:
        client = FusionClient(server.url)
        answer = client.rank([body])[0]
        assert set(answer) == {"event_id", "slate", "action", "propensity", "weights", "policy_version"}
        assert len(answer["slate"]) == SLATE and set(answer["slate"]) <= set(body["candidates"])
        # the slate is the top 10 of the blend the action chose; the propensity is the policy's probability of it
        context = contexts_from_fields(np.array([2]), np.array([True]), np.array([2]), np.array([20.5]),
                                       np.array([2]), np.array([7]), np.array([1]), np.array([True]))
        policy = LinUCB.load(policy_run / "policy.npz")
        assert answer["propensity"] == pytest.approx(policy.action_distribution(context)[0, answer["action"]])
        weights = np.array([answer["weights"][a] for a in ARMS])
        z = [(np.array(body["scores"][a]) - np.mean(body["scores"][a])) / np.std(body["scores"][a]) for a in ARMS]
        blended = weights @ np.array(z)
        assert answer["slate"] == np.array(body["candidates"])[np.argsort(-blended)[:SLATE]].tolist()
        clicks = [0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
        assert client.reward([{"event_id": answer["event_id"], "clicks": clicks, "purchases": [0] * 4 + [1] + [0] * 5,
                               "revenue": [0.0] * 4 + [25.0] + [0.0] * 5}]) == ["joined"]
        assert client.reward([{"event_id": answer["event_id"], "clicks": clicks}]) == ["duplicate"]
        metrics = client.metrics()
        assert "fusionsim_rewards_joined_total 1" in metrics and "fusionsim_rewards_duplicate_total 1" in metrics
        assert 'fusionsim_rank_latency_seconds_bucket{le="+Inf"} 1' in metrics
        assert client.health()["shop"]["arms"] == ARMS
        client.close()
    log = read_impression_log(tmp_path / "log" / "decisions")  # the impression schema's own validation passes
    assert log["request_id"].tolist() == [answer["event_id"]] * SLATE
    assert log["item_id"].tolist() == answer["slate"] and log["click"].tolist() == clicks
    assert log["revenue"].sum() == 25.0 and log["session_id"].tolist() == [3] * SLATE
    raw = pd.read_parquet(tmp_path / "log" / "decisions")
    assert raw["action_propensity"].iloc[0] == answer["propensity"] and raw["reward"].iloc[0] == 2.0
    np.testing.assert_array_equal(raw.filter(like="context_").iloc[0].to_numpy(np.float32), context[0])


def test_a_batch_call_ranks_each_request_with_its_own_event(policy_run, tmp_path):
    rng = np.random.default_rng(1)
    bodies = [request_body(rng, hour=0.75 * h) for h in range(32)]
    with Server(ServeConfig(policy=str(policy_run)), tmp_path / "log") as server:
        client = FusionClient(server.url)
        answers = client.rank(bodies)
        singles = [client.rank([b])[0] for b in bodies[:3]]
    ids = [a["event_id"] for a in answers]
    assert ids == list(range(32)) and [s["event_id"] for s in singles] == [32, 33, 34]
    assert all(set(a["slate"]) <= set(b["candidates"]) for a, b in zip(answers, bodies))


BAD = [  # (what, body or raw bytes, status, field, message)
    ("missing field", lambda b: b["context"].pop("segment"), 422, "context.segment",
     "context.segment is missing: must be one of new, casual, loyal, bargain"),
    ("unknown arm", lambda b: b["scores"].update(mf=[0.0] * N_CANDIDATES), 422, "scores.mf",
     "scores.mf: 'mf' is not an arm of this policy; its arms are popularity, new_arrivals"),
    ("NaN score", lambda b: b["scores"]["popularity"].__setitem__(17, float("nan")), 422, "scores.popularity[17]",
     "scores.popularity[17] = nan is not allowed: must be a finite number"),
    ("wrong candidate count", lambda b: b["candidates"].pop(), 422, "candidates",
     "candidates has 199 entries; must be a list of 200 distinct item ids (integers >= 0)"),
    ("string score", lambda b: b["scores"]["new_arrivals"].__setitem__(3, "x"), 422, "scores.new_arrivals[3]",
     "scores.new_arrivals[3] = 'x' is not allowed: must be a finite number"),
    ("bad hour", lambda b: b["context"].update(hour=24), 422, "context.hour",
     "context.hour = 24 is not allowed: must be hour of the day, a number in [0, 24)"),
    ("repeated item", lambda b: b["candidates"].__setitem__(1, b["candidates"][0]), 422, "candidates",
     None),
    ("slate too long", lambda b: b.update(slate_size=201), 422, "slate_size",
     "slate_size = 201 is not allowed: must be an integer from 1 to the 200 candidates"),
]


@pytest.mark.parametrize("what, change, status, field, message", BAD, ids=[b[0] for b in BAD])
def test_bad_rank_input_is_answered_4xx_naming_the_field(policy_run, tmp_path, what, change, status, field, message,
                                                         request):
    rng = np.random.default_rng(2)
    body = request_body(rng)
    change(body)
    server = request.getfixturevalue("shared_server")
    code, answer = post(server.url, "/rank", json.dumps(body).encode())
    assert (code, answer["field"]) == (status, field)
    if message is not None:
        assert answer["error"] == message
    else:
        assert answer["error"].startswith(f"candidates lists item {body['candidates'][0]} twice")


@pytest.fixture(scope="module")
def shared_server(policy_run, tmp_path_factory):
    with Server(ServeConfig(policy=str(policy_run)), tmp_path_factory.mktemp("shared") / "log") as server:
        yield server


def test_bad_reward_input_and_bodies_that_are_not_json(shared_server):
    url = shared_server.url
    assert post(url, "/reward", b'{"event_id": 4096, "clicks": [0]}') == (
        404, {"error": "event_id = 4096 was never issued by this server", "field": "event_id"})
    code, answer = post(url, "/rank", b"{not json")
    assert code == 400 and answer["field"] == "body" and answer["error"].startswith("the body is not JSON")
    event = FusionClient(url).rank([request_body(np.random.default_rng(3))])[0]["event_id"]
    assert post(url, "/reward", json.dumps({"event_id": event, "clicks": [0, 1]}).encode()) == (
        422, {"error": "clicks has 2 entries; must be a list of 10 values 0 or 1, one per slot of the slate",
              "field": "clicks"})
    assert post(url, "/reward", json.dumps({"event_id": event, "clicks": [0] * 10,
                                            "purchases": [1] + [0] * 9}).encode()) == (
        422, {"error": "purchases[0] = 1 is not allowed: a purchase needs a click in the same slot",
              "field": "purchases[0]"})
    assert post(url, "/reward", json.dumps({"rewards": [{"event_id": event, "clicks": [0] * 10},
                                                        {"event_id": event + 5, "clicks": [0] * 10}]}).encode()) == (
        404, {"error": f"rewards[1].event_id = {event + 5} was never issued by this server",
              "field": "rewards[1].event_id"})


def test_concurrent_clients_lose_and_repeat_no_event_and_never_interleave_rows(policy_run, tmp_path):
    n_threads, calls = 8, 10
    with Server(ServeConfig(policy=str(policy_run), flush_seconds=0.05), tmp_path / "log") as server:
        seen: list[list[int]] = [[] for _ in range(n_threads)]

        def shopper(t: int) -> None:
            rng, client = np.random.default_rng(100 + t), FusionClient(server.url)
            for _ in range(calls):
                answer = client.rank([request_body(rng, session_step=t)])[0]
                client.reward([{"event_id": answer["event_id"], "clicks": [1] + [0] * 9}])
                seen[t].append(answer["event_id"])
            client.close()

        threads = [threading.Thread(target=shopper, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    ids = sorted(i for s in seen for i in s)
    assert ids == list(range(n_threads * calls))
    log = read_impression_log(tmp_path / "log" / "decisions")
    assert len(log) == n_threads * calls * SLATE and log["click"].sum() == n_threads * calls
    # each request's rows are contiguous, in slot order, and carry the context its client sent
    assert (log["position"].to_numpy().reshape(-1, SLATE) == np.arange(SLATE)).all()
    assert (log["request_id"].to_numpy().reshape(-1, SLATE) == log["request_id"].to_numpy()[::SLATE, None]).all()
    raw = pd.read_parquet(tmp_path / "log" / "decisions")
    step = np.rint(raw["context_session_step"].to_numpy() * 20).astype(int)[::SLATE]
    by_thread = {t: sorted(s) for t, s in enumerate(seen)}
    for event, t in zip(raw["request_id"].to_numpy()[::SLATE], step):
        assert event in by_thread[t]


def test_the_join_window_expires_events_and_late_rewards_are_ignored(policy_run, tmp_path):
    with Server(ServeConfig(policy=str(policy_run), join_window=0.2, flush_seconds=0.05), tmp_path / "log") as server:
        client = FusionClient(server.url)
        event = client.rank([request_body(np.random.default_rng(4))])[0]["event_id"]
        time.sleep(0.6)
        assert client.reward([{"event_id": event, "clicks": [1] * 10}]) == ["late"]
        assert "fusionsim_events_expired_total 1" in client.metrics()
    raw = pd.read_parquet(tmp_path / "log" / "decisions")
    assert not raw["joined"].any() and raw["click"].sum() == 0


def test_learning_updates_snapshots_and_a_restart_resumes_from_the_snapshot(policy_run, tmp_path):
    config = ServeConfig(policy=str(policy_run), learn=True, learn_batch=4, snapshot_every=8)
    rng = np.random.default_rng(5)
    with Server(config, tmp_path / "log") as server:
        client = FusionClient(server.url)
        answers = client.rank([request_body(rng) for _ in range(10)])
        client.reward([{"event_id": a["event_id"], "clicks": [1] + [0] * 9} for a in answers[:8]])
        assert client.health()["policy_version"] == 2
        snapshot = json.loads((tmp_path / "log" / "snapshots" / "latest.json").read_text())
        assert snapshot == {"file": "policy-000002.npz", "policy_version": 2}
        theta = LinUCB.load(tmp_path / "log" / "snapshots" / "policy-000002.npz").state_arrays()
    # closing expired the last two (no reward: 0) and snapshotted after the queue (2 < learn_batch) was kept
    restarted = FusionService(config, tmp_path / "log")
    assert restarted.start == 1 and restarted.policy_version == 2
    for name, array in restarted.served.policy.state_arrays().items():
        np.testing.assert_array_equal(array, theta[name])
    answer = restarted.rank(parse_rank(request_body(rng), ARMS, N_CANDIDATES, SLATE))[0]
    assert answer["event_id"] == 1 << EVENT_BITS  # the first event of the second start
    stale = Outcome(answers[0]["event_id"], np.zeros(10, np.int8), np.zeros(10, np.int8), np.zeros(10))
    assert restarted.reward([stale]) == ["late"]
    with pytest.raises(ServeError, match=r"logs a server with learn = True; this one has learn = False"):
        FusionService(ServeConfig(policy=str(policy_run)), tmp_path / "log")


def _serve_in_child(policy: str, folder: str, port_pipe) -> None:
    service = FusionService(ServeConfig(policy=policy, learn=True, learn_batch=8, snapshot_every=40,
                                        flush_seconds=0.1, join_window=30.0), folder)
    sock = bind("127.0.0.1", 0)
    port_pipe.send(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on")).run(sockets=[sock])


def _start_child(policy_run: Path, folder: Path):
    parent, child = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve_in_child,
                                                          args=(str(policy_run), str(folder), child), daemon=True)
    process.start()
    port = parent.recv()
    client = FusionClient(f"http://127.0.0.1:{port}")
    for _ in range(200):
        try:
            client.health()
            return process, client
        except (ConnectionError, OSError):
            time.sleep(0.02)
    raise AssertionError("the server did not start")


def test_kill_9_under_load_loses_at_most_the_last_interval_and_the_restart_resumes(policy_run, tmp_path):
    folder = tmp_path / "log"
    process, client = _start_child(policy_run, folder)
    rng = np.random.default_rng(6)
    bodies = [request_body(rng) for _ in range(16)]
    rewarded = []
    for _ in range(10):
        answers = client.rank(bodies)
        client.reward([{"event_id": a["event_id"], "clicks": [0, 1] + [0] * 8} for a in answers])
        rewarded += [a["event_id"] for a in answers]
    time.sleep(1.0)  # ten flush intervals: everything rewarded so far is on disk
    before_kill = set(rewarded)
    for _ in range(5):  # load that is still in flight when the process dies
        answers = client.rank(bodies)
        client.reward([{"event_id": a["event_id"], "clicks": [0, 1] + [0] * 8} for a in answers[:8]])
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    log = read_impression_log(folder / "decisions")  # every part reads back whole
    written = set(log["request_id"].tolist())
    assert before_kill <= written and len(log) == len(written) * SLATE
    assert not list((folder / "decisions").glob(".*"))  # no temporary file left visible as a part
    snapshot = json.loads((folder / "snapshots" / "latest.json").read_text())
    process, client = _start_child(policy_run, folder)
    try:
        health = client.health()
        assert health["start"] == 1 and health["policy_version"] == snapshot["policy_version"] >= 5
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.join()


def test_a_log_folder_of_another_run_and_a_taken_port_are_refused(policy_run, tmp_path):
    with pytest.raises(ServeError, match=r"holds a train run, not a serve log"):
        FusionService(ServeConfig(policy=str(policy_run)), policy_run)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=rf"--host 127.0.0.1 --port {port} cannot be listened on"):
            bind("127.0.0.1", port)
    with pytest.raises(ServeError, match=r"^--join-window = 0 is not allowed: must be a number of seconds in "
                                         r"\(0, 86400\]$"):
        ServeConfig(policy=str(policy_run), join_window=0)
    with pytest.raises(ServeError, match=r"^--cascade needs a train-stacker run \(its shop and stacker\); .* is a "
                                         r"train run$"):
        FusionService(ServeConfig(policy=str(policy_run), cascade="popularity>50>stacker"), tmp_path / "z")
    with pytest.raises(ServeError, match=r"^policy run .* is not a complete fusionsim train or "):
        FusionService(ServeConfig(policy=str(tmp_path)), tmp_path / "x")


def test_replay_drives_the_service_with_simulated_shoppers(policy_run, tmp_path):
    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    config = ServeConfig(policy=str(policy_run), learn=True, learn_batch=64)
    with Server(config, tmp_path / "log") as server:
        metrics = run_replay(ReplayConfig(server=server.url, scenario=str(scenario), requests=512, slots=64,
                                          log_every=256), tmp_path / "replay")
    assert metrics["rewards"] == {"joined": 512, "duplicate": 0, "late": 0} and metrics["requests"] == 512
    assert metrics["final_policy_version"] == 7 and len(metrics["curve"]) == 2
    log = read_impression_log(tmp_path / "log" / "decisions")
    assert log["request_id"].nunique() == 512
    assert log.groupby("request_id")["click"].sum().mean() == pytest.approx(metrics["reward_per_request"])


def test_the_served_log_fed_to_ope_closes_the_loop(policy_run, tmp_path):
    """Served frozen, the log's propensities are the policy's own: ope of the same policy weights every round 1
    and its interval holds the value the replay measured."""
    from fusionsim.experiments.ope_run import OPEConfig, run_ope

    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    with Server(ServeConfig(policy=str(policy_run)), tmp_path / "log") as server:
        measured = run_replay(ReplayConfig(server=server.url, scenario=str(scenario), requests=1024, slots=128,
                                           log_every=1024), tmp_path / "replay")
    metrics = run_ope(OPEConfig(logs=str(tmp_path / "log"), policy=str(policy_run), estimators=("ips", "dr")),
                      tmp_path / "ope")
    assert metrics["rounds"] == 1024 and metrics["effective_sample_size"] == pytest.approx(1024)
    assert metrics["logged_reward_per_request"] == pytest.approx(measured["reward_per_request"])
    for name in ("ips", "dr"):
        r = metrics["estimators"][name]
        assert r["ci_lower"] <= measured["reward_per_request"] <= r["ci_upper"], (name, r)


def test_the_commands_refuse_bad_input_in_one_line(policy_run, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fusionsim.experiments import serve as serve_module
    from fusionsim.experiments.cli import cli

    runner = CliRunner()
    cases = [
        (["serve", str(tmp_path / "none")], f"Error: policy run {tmp_path / 'none'} does not exist or is not a folder; "
         "give a fusionsim train or fusionsim learn or fusionsim train-stacker run folder"),
        (["serve", str(policy_run), "--join-window", "nan"],
         "Error: Invalid value for '--join-window': 'nan' is not a finite number; allowed: a number in (0, 86400]"),
        (["replay", "--server", "ftp://x", "--out", str(tmp_path / "r")],
         "Error: --server 'ftp://x' is not allowed: must be an http://host:port address"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert (result.exit_code, result.output.strip()) == (2, message)
    real = serve_module.importlib.util.find_spec
    monkeypatch.setattr(serve_module.importlib.util, "find_spec",
                        lambda name: None if name == "fastapi" else real(name))
    result = runner.invoke(cli, ["serve", str(policy_run), "--log-dir", str(tmp_path / "log")])
    assert (result.exit_code, result.output.strip()) == (
        2, 'Error: fusionsim serve needs the serve extra (FastAPI, uvicorn): pip install -e ".[serve]"')


def test_a_stacker_run_serves_its_own_ranking_and_a_cascade(tmp_path):
    from fusionsim.envs.stacking.stacker import Stacker
    from fusionsim.experiments.simulate import SimulateConfig, run_policy
    from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker

    scenario = small_scenario()
    run_policy(SimulateConfig(policy="uniform-grid", requests=2048, slots=512), scenario, tmp_path / "logs",
               progress=False)
    train_stacker(TrainStackerConfig(logs=str(tmp_path / "logs"), kind="logistic", epochs=1), tmp_path / "stacker")
    body = request_body(np.random.default_rng(7))
    with Server(ServeConfig(policy=str(tmp_path / "stacker")), tmp_path / "log") as server:
        answer = FusionClient(server.url).rank([body])[0]
    assert (answer["action"], answer["propensity"], answer["weights"]) == (0, 1.0, {a: None for a in ARMS})
    context = contexts_from_fields(np.array([2]), np.array([True]), np.array([2]), np.array([20.5]), *(
        np.array([v]) for v in (0, 0, 0, False)))
    scores = [np.array([body["scores"][a]], dtype=np.float32) for a in ARMS]
    stacked = Stacker.load(tmp_path / "stacker").score(scores, context)[0]
    order = np.argsort(-stacked, kind="stable")
    assert answer["slate"] == np.array(body["candidates"])[order[:SLATE]].tolist()
    # the same run as a fixed cascade: the stacker orders the 50 most popular candidates
    with Server(ServeConfig(policy=str(tmp_path / "stacker"), cascade="popularity>50>stacker"),
                tmp_path / "cascade_log") as server:
        client = FusionClient(server.url)
        answer = client.rank([body])[0]
        assert client.health()["agent"] == "cascade popularity>50>stacker"
    kept = np.argsort(-scores[0][0], kind="stable")[:50]
    expected = kept[np.argsort(-stacked[kept], kind="stable")][:SLATE]
    assert (answer["action"], answer["propensity"]) == (0, 1.0)
    assert answer["slate"] == np.array(body["candidates"])[expected].tolist()
    with pytest.raises(ServeError, match=r"^--cascade 'popularity>5>stacker': cascade N \(keep\) = 5 is not allowed"):
        FusionService(ServeConfig(policy=str(tmp_path / "stacker"), cascade="popularity>5>stacker"), tmp_path / "x")
    with pytest.raises(ServeError, match=r"^--cascade 'mf>50>stacker' is not allowed: must be <arm>><N>><arm or "
                                         r"stacker>, e.g. popularity>50>stacker, with arms among popularity, "
                                         r"new_arrivals$"):
        FusionService(ServeConfig(policy=str(tmp_path / "stacker"), cascade="mf>50>stacker"), tmp_path / "y")


def test_the_decision_table_of_slates_of_different_lengths_by_hand():
    """Two decisions, slates of 2 and 3: every column row by row (the table is built by whole columns)."""
    dim = len(CONTEXT_NAMES)
    first = Decision(7, 1.5, np.arange(dim, dtype=np.float32), np.array([40, 41]), np.array([[1.0, 2.0], [3.0, 4.0]]),
                     2, 0.25, np.array([0.5, 0.5], np.float32), 11, -1, 2, 1, 0, "shoes", 3,
                     np.array([0, 1], np.int8), np.array([0, 1], np.int8), np.array([0.0, 9.5]), 1.0, True)
    second = Decision(8, 2.5, -np.arange(dim, dtype=np.float32), np.array([50, 51, 52]),
                      np.array([[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]), 0, 0.75, np.array([1.0, 0.0], np.float32),
                      12, 4, 0, 0, 2, "", 3, np.zeros(3, np.int8), np.zeros(3, np.int8), np.zeros(3), 0.0, False)
    table = decisions_table([first, second], ARMS, continuous=False).to_pydict()
    assert table["request_id"] == [7, 7, 8, 8, 8] and table["position"] == [0, 1, 0, 1, 2]
    assert table["session_id"] == [7, 7, 4, 4, 4]  # sent without a session: a session of its own
    assert table["item_id"] == [40, 41, 50, 51, 52] and table["click"] == [0, 1, 0, 0, 0]
    assert table["revenue"] == [0.0, 9.5, 0.0, 0.0, 0.0] and table["query"] == ["shoes"] * 2 + [""] * 3
    assert table["segment"] == ["loyal"] * 2 + ["new"] * 3 and table["surface"] == ["search"] * 2 + ["feed"] * 3
    assert table["device"] == ["desktop"] * 2 + ["app"] * 3 and table["user_id"] == [11, 11, 12, 12, 12]
    assert table["action"] == [2, 2, 0, 0, 0] and table["action_propensity"] == [0.25, 0.25, 0.75, 0.75, 0.75]
    assert table["reward"] == [1.0, 1.0, 0.0, 0.0, 0.0] and table["joined"] == [True] * 2 + [False] * 3
    assert table[f"score_{ARMS[1]}"] == [2.0, 4.0, 6.0, 8.0, 10.0] and table[f"weights_{ARMS[0]}"][2] == 1.0
    assert table[f"context_{CONTEXT_NAMES[1]}"] == [1.0, 1.0, -1.0, -1.0, -1.0] and table["policy_version"] == [3] * 5


def test_decisions_are_tabled_as_they_complete_and_a_flush_writes_them_all_in_order(policy_run, tmp_path):
    """300 decisions, completed out of order (rewards in reverse): two tables of LOG_SLICE are made as they
    complete, the remaining 44 at the flush, and the one part holds all 300 in completion order."""
    rng = np.random.default_rng(5)
    service = FusionService(ServeConfig(policy=str(policy_run)), tmp_path / "log")
    answers = service.rank(parse_rank({"requests": [request_body(rng) for _ in range(300)]}, ARMS, N_CANDIDATES,
                                      SLATE))
    ids = [a["event_id"] for a in reversed(answers)]
    clicks = [np.eye(SLATE, dtype=np.int8)[i % SLATE] for i in range(300)]
    service.reward([Outcome(e, c, np.zeros(SLATE, np.int8), np.zeros(SLATE)) for e, c in zip(ids, clicks)])
    assert len(service._completed_tables) == 300 // LOG_SLICE and len(service._completed) == 300 % LOG_SLICE
    service.flush()
    assert service.take_completed() == (-1, None, 0) and service.metrics.counts["decisions_written"] == 300
    parts = sorted((tmp_path / "log" / "decisions").glob("part-*.parquet"))
    log = pd.read_parquet(parts[0])
    assert len(parts) == 1 and log["request_id"].tolist() == [e for e in ids for _ in range(SLATE)]
    np.testing.assert_array_equal(log["click"].to_numpy().reshape(300, SLATE), np.array(clicks))
    assert log["item_id"].tolist() == [i for a in reversed(answers) for i in a["slate"]]
