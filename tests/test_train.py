import hashlib
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fusionsim.experiments import tags
from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return str(path)


def _scalar_tags(folder) -> set[str]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return set(events.Tags()["scalars"])


def _train(scenario_file, out, *extra):
    return CliRunner().invoke(cli, ["train", "--scenario", scenario_file, "--out", str(out), "--slots", "128",
                                    "--log-every", "2560", "--checkpoint-every", "5120", "--oracle-requests", "2048",
                                    *extra])


@pytest.mark.parametrize("agent", ["linucb", "lints", "eps", "ucb", "ts"])
def test_every_agent_trains_and_writes_its_curves(agent, scenario_file, tmp_path):
    result = _train(scenario_file, tmp_path / agent, "--agent", agent, "--requests", "10240")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / agent / "metrics.json").read_text())
    assert metrics["requests"] == 10240 and len(metrics["curve"]) == 4
    events = EventAccumulator(str(tmp_path / agent / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {tags.REWARD, tags.REGRET, tags.CTR, tags.CONVERSION, tags.REVENUE,
            tags.arm_weight("loyal", "popularity")} <= scalars
    steps = [e.step for e in events.Scalars(tags.REWARD)]
    assert steps == [2560, 5120, 7680, 10240]
    weights = [events.Scalars(tags.arm_weight("new", arm))[-1].value for arm in ("popularity", "new_arrivals")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("agent", ["linucb", "ts"])
def test_resume_gives_the_same_bytes_as_an_uninterrupted_run(agent, scenario_file, tmp_path):
    assert _train(scenario_file, tmp_path / "whole", "--agent", agent, "--requests", "15360").exit_code == 0
    assert _train(scenario_file, tmp_path / "split", "--agent", agent, "--requests", "5120").exit_code == 0
    resumed = _train(scenario_file, tmp_path / "split", "--agent", agent, "--requests", "15360", "--resume")
    assert resumed.exit_code == 0, resumed.output
    for name in ("metrics.json", "policy.npz"):
        whole, split = (hashlib.sha256((tmp_path / run / name).read_bytes()).hexdigest() for run in ("whole", "split"))
        assert whole == split, name
    assert not list((tmp_path / "split").rglob("*.pkl")), "no pickles"


def test_bad_train_input(scenario_file, tmp_path):
    result = _train(scenario_file, tmp_path / "a", "--agent", "dqn", "--requests", "100")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ("Error: --agent 'dqn' is not allowed: use one of linucb, lints, "
                                                      "eps, ucb, ts, joint_linucb, joint_lints, ppo")
    assert not (tmp_path / "a").exists(), "a refused run leaves nothing behind"
    result = _train(scenario_file, tmp_path / "b", "--agent", "ucb", "--requests", "100", "--resume")
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: --resume {tmp_path / 'b'} holds no config.yaml; give a fusionsim run folder"
    run = tmp_path / "c"
    assert _train(scenario_file, run, "--agent", "ucb", "--requests", "2560").exit_code == 0
    before = (run / "metrics.json").read_text()
    (checkpoint,) = [p for p in (run / "checkpoints").iterdir() if p.is_dir()]
    (checkpoint / "simulator.npz").write_bytes(b"PK\x03\x04 not a zip")
    result = _train(scenario_file, run, "--agent", "ucb", "--requests", "5120", "--resume")
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"Error: --resume: checkpoint {checkpoint / 'simulator.npz'} is corrupt")
    assert (run / "metrics.json").read_text() == before, "nothing already written is lost"
    result = _train(scenario_file, tmp_path / "d", "--agent", "ucb", "--requests", "100", "--log-every", "300")
    assert result.exit_code == 2
    assert "must be a multiple of --log-every 300" in result.output


def test_linucb_ends_closer_to_the_oracle_than_static_blends(tmp_path):
    """Default scenario, fixed seeds: over the last 20% of 102,400 requests, LinUCB learning online earns
    more than the best single arm and the best global static blend (found by grid search with common
    random numbers), and at least 95% of the oracle (best static blend per context cell)."""
    from fusionsim.envs.fusion import ActionMapper
    from fusionsim.envs.scenario import load_scenario
    from fusionsim.envs.shop import make_shop
    from fusionsim.agents import ConstantAction
    from fusionsim.experiments.oracle import CellTablePolicy, grid_search
    from fusionsim.experiments.online import run_online
    from fusionsim.experiments.train import TrainConfig, train

    scenario = load_scenario("default")
    world, arms = make_shop(scenario)
    search = grid_search(world, arms, 4, 20_000, seed=3, slots=256)
    mapper = ActionMapper("grid", 2, 4)
    n = 102_400

    def last_20pct(policy):
        return run_online(world, arms, policy, mapper, n, seed=7, slots=256).last_20pct

    oracle = last_20pct(CellTablePolicy(search.oracle_table().tolist()))
    static = last_20pct(ConstantAction(search.best_global))
    single = last_20pct(ConstantAction(search.best_single_arm))
    config = TrainConfig(agent="linucb", requests=n, seed=7, slots=256, log_every=n // 20, checkpoint_every=n,
                         oracle_requests=0)
    metrics = train(config, scenario, tmp_path, progress=False)
    linucb = metrics["reward_per_request_last_20pct"]
    assert linucb > static and linucb > single and linucb >= 0.95 * oracle, (single, static, linucb, oracle)


def test_ppo_trains_on_the_batched_simulator_and_explains(scenario_file, tmp_path):
    from fusionsim.agents.ppo import PPOPolicy

    run = tmp_path / "ppo"
    result = _train(scenario_file, run, "--agent", "ppo", "--requests", "5120", "--ppo-n-steps", "16")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["requests"] == 5120 and metrics["revenue_per_session"] > 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {tags.REWARD, tags.REGRET} <= set(events.Tags()["scalars"])
    assert {"train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"} <= _scalar_tags(
        run / "tensorboard" / "sb3"), "SB3's own training figures go to the run's TensorBoard folder"
    actions, density = PPOPolicy.load(run).act(np.zeros((4, 14), dtype=np.float32))
    assert actions.shape == (4, 2) and (density > 0).all()
    resumed = _train(scenario_file, run, "--agent", "ppo", "--requests", "7680", "--ppo-n-steps", "16", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "metrics.json").read_text())["requests"] == 7680
    assert CliRunner().invoke(cli, ["explain", str(run), "--requests", "1024"]).exit_code == 0
    assert (run / "explain.png").is_file()
