"""PPO as a fusion policy: the clipped Gaussian's density (by hand, and as an exact importance weight),
seeded sampling, the wider logger, and ``simulate --policy run:<PPO run>`` logging it with its densities."""

import json
import shutil
from statistics import NormalDist

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from stable_baselines3.common.policies import ActorCriticPolicy

from fusionsim.agents.ppo import PPOPolicy, clipped_gaussian_density
from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.experiments.cli import cli
from tests.conftest import write_small_scenario

N = NormalDist()


def test_clipped_gaussian_density_by_hand():
    actions = np.array([[0.5, 1.0], [-1.0, 0.0]])
    mean = np.array([[0.0, 0.2], [0.3, -0.1]])
    std = np.array([[1.0, 0.5], [2.0, 1.0]])
    expected = [N.pdf(0.5) * N.cdf((0.2 - 1) / 0.5),  # inside, then the mass clipped onto 1
                N.cdf((-1 - 0.3) / 2.0) * N.pdf(0.1)]  # the mass clipped onto -1, then inside
    np.testing.assert_allclose(clipped_gaussian_density(actions, mean, std), expected, rtol=1e-12)


def test_clipped_density_ratio_is_an_importance_weight():
    """E_b[p_e(a) / p_b(a) f(a)] = E_e[f(a)] for a = clip(Gaussian), on 200,000 draws from the wider logger
    (within 4 standard errors): f = 1 (the weights' mean is 1), the indicator of an action clipped onto 1
    (its mass under the evaluation policy, by hand) and the action itself (its mean on 2,000,000 draws)."""
    n = 200_000
    a = np.clip(np.random.default_rng(3).normal(0.0, 1.2, (n, 1)), -1, 1)
    w = (clipped_gaussian_density(a, np.full_like(a, 0.5), np.full_like(a, 0.6))
         / clipped_gaussian_density(a, np.zeros_like(a), np.full_like(a, 1.2)))
    on_policy = np.clip(np.random.default_rng(4).normal(0.5, 0.6, 2_000_000), -1, 1)
    for f, truth, truth_se in ((np.ones(n), 1.0, 0.0),
                               ((a[:, 0] >= 1).astype(float), 1 - N.cdf((1 - 0.5) / 0.6), 0.0),
                               (a[:, 0], on_policy.mean(), on_policy.std() / np.sqrt(len(on_policy)))):
        terms = w * f
        se = np.hypot(terms.std() / np.sqrt(n), truth_se)
        assert abs(terms.mean() - truth) < 4 * se, (terms.mean(), truth, se)


@pytest.fixture(scope="module")
def network():
    space = gym.spaces.Box(0.0, 1.0, (len(CONTEXT_NAMES),), dtype=np.float32)
    torch_policy = ActorCriticPolicy(space, gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
                                     lr_schedule=lambda _: 0.0, net_arch=[8])
    torch_policy.set_training_mode(False)
    return torch_policy


def test_sampling_is_seeded_and_its_density_is_the_clipped_gaussians(network):
    contexts = np.random.default_rng(0).random((500, len(CONTEXT_NAMES))).astype(np.float32)
    one, two = PPOPolicy(network, seed=5), PPOPolicy(network, seed=5)
    a1, d1 = one.act(contexts)
    a2, d2 = two.act(contexts)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(d1, d2)
    assert not np.array_equal(a1, PPOPolicy(network, seed=6).act(contexts)[0])
    assert (np.abs(a1) <= 1).all() and (np.abs(a1) == 1).any()  # clipped, with atoms at the bounds
    mean, std = one.gaussian(contexts)
    np.testing.assert_allclose(d1, clipped_gaussian_density(a1, mean, std), rtol=1e-12)
    np.testing.assert_allclose(one.action_density(contexts, a1), d1, rtol=1e-12)
    wide = one.sampling(1.5, seed=5)
    np.testing.assert_allclose(wide.gaussian(contexts)[1], 1.5 * std, rtol=1e-6)
    np.testing.assert_array_equal(wide.gaussian(contexts)[0], mean)
    deterministic = PPOPolicy(network, deterministic=True)
    np.testing.assert_allclose(deterministic.act(contexts)[0], np.clip(mean, -1, 1), rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"std_scale": 0.0}, "std_scale must be a positive finite number; got 0.0"),
    ({"std_scale": float("nan")}, "std_scale must be a positive finite number; got nan"),
    ({"std_scale": "2"}, "std_scale must be a positive finite number; got '2'"),
    ({"seed": -1}, "seed must be a non-negative integer or None; got -1"),
])
def test_bad_sampling_arguments(network, kwargs, message):
    with pytest.raises(ValueError) as caught:
        PPOPolicy(network, **kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize("actions, message", [
    (np.zeros((3, 3)), "actions must have shape (3, 2), one per context; got (3, 3)"),
    (np.full((3, 2), 1.5), "actions must lie in [-1, 1] (the clipped action box); got 1.5"),
    (np.full((3, 2), np.nan), "actions must lie in [-1, 1] (the clipped action box); got nan"),
])
def test_bad_actions_for_the_density(network, actions, message):
    with pytest.raises(ValueError) as caught:
        PPOPolicy(network).action_density(np.zeros((3, len(CONTEXT_NAMES)), dtype=np.float32), actions)
    assert str(caught.value) == message


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ppo")
    scenario = write_small_scenario(folder)
    run = folder / "run"
    result = CliRunner().invoke(cli, ["train", "--scenario", str(scenario), "--out", str(run), "--agent", "ppo",
                                      "--requests", "2560", "--slots", "128", "--log-every", "2560",
                                      "--checkpoint-every", "2560", "--oracle-requests", "0", "--ppo-n-steps", "16"])
    assert result.exit_code == 0, result.output
    return scenario, run


def _simulate(scenario, out, *extra):
    return CliRunner().invoke(cli, ["simulate", "--scenario", str(scenario), "--requests", "1000", "--slots", "100",
                                    "--seed", "3", "--out", str(out), *map(str, extra)])


def test_simulate_logs_a_ppo_policy_with_its_densities(ppo_run, tmp_path):
    scenario, run = ppo_run
    result = _simulate(scenario, tmp_path / "log", "--policy", f"run:{run}", "--ppo-std-scale", "1.5")
    assert result.exit_code == 0, result.output
    log = pd.read_parquet(tmp_path / "log" / "logs")
    assert (log["action"] == -1).all()
    actions = log[["action_popularity", "action_new_arrivals"]].to_numpy()
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float32)
    logger = PPOPolicy.load(run).sampling(1.5)
    np.testing.assert_allclose(log["propensity"], logger.action_density(contexts, actions), rtol=1e-10)
    again = _simulate(scenario, tmp_path / "again", "--policy", f"run:{run}", "--ppo-std-scale", "1.5")
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(log, pd.read_parquet(tmp_path / "again" / "logs"))  # the same seed, the same log


def test_std_scale_only_for_a_ppo_policy(ppo_run, tmp_path):
    scenario, _ = ppo_run
    result = _simulate(scenario, tmp_path / "log", "--policy", "uniform", "--ppo-std-scale", "2")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --ppo-std-scale 2.0: only a PPO policy (--policy run:<PPO run>) has a standard deviation to scale; "
        "--policy uniform has none")
    assert not (tmp_path / "log" / "config.yaml").exists()


def test_ope_evaluates_the_stochastic_policy_on_a_ppo_logged_log(ppo_run, tmp_path):
    from fusionsim.experiments.evaluation.session import session_arrays_from_log
    from fusionsim.experiments.ope_run import SESSION_FAMILY

    scenario, run = ppo_run
    assert _simulate(scenario, tmp_path / "log", "--policy", f"run:{run}", "--ppo-std-scale", "1.3").exit_code == 0
    result = CliRunner().invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(run),
                                      "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    assert metrics["evaluation_policy"] == "stochastic"
    assert list(metrics["estimators"]) == ["ips", "snips", "dr"]
    assert list(metrics["per_session"]["estimators"]) == list(SESSION_FAMILY)
    # IPW by hand: the kept sessions' rewards weighted by the ratio of the policy's to the logger's density
    log = pd.read_parquet(tmp_path / "log" / "logs")
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float32)
    density = PPOPolicy.load(run).action_density(contexts, log[["action_popularity", "action_new_arrivals"]])
    sessions = session_arrays_from_log(log, None, evaluation_pscore=density)
    ips = np.mean(sessions.evaluation_policy_pscore / sessions.pscore * sessions.reward)
    assert metrics["estimators"]["ips"]["estimate"] == pytest.approx(ips, rel=1e-10)
    assert metrics["rounds"] == len(sessions.row)
    for family in (metrics["estimators"], metrics["per_session"]["estimators"]):
        for r in family.values():
            assert r["ci_lower"] <= r["estimate"] <= r["ci_upper"] and np.isfinite(r["relative_error"])
    report = (tmp_path / "ope" / "report.md").read_text()
    assert f"PPO's stochastic Gaussian (as ab-test serves it) on the log of the PPO run `{run}` with its standard " \
           "deviation x 1.3" in report
    assert f"{len(sessions.row):,} of the {len(log):,} logged requests are used" in report
    assert metrics["logger"] == {"run": str(run), "std_scale": 1.3, "same_network": True}
    assert "**Note:**" not in report
    assert yaml.safe_load((tmp_path / "ope" / "config.yaml").read_text())["args"]["estimators"] == ["ips", "snips",
                                                                                                   "dr"]
    # the same network in another folder is the same logger; another network is evaluated with a note
    for name, perturb in (("copy", 0.0), ("other", 0.1)):
        shutil.copytree(run, tmp_path / name)
        if perturb:
            other = PPOPolicy.load(tmp_path / name)
            with torch.no_grad():
                for parameter in other.policy.parameters():
                    parameter.add_(perturb)
            other.save(tmp_path / name)
        result = CliRunner().invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / name),
                                          "--out", str(tmp_path / f"ope_{name}")])
        assert result.exit_code == 0, result.output
        noted = f"**Note:** the logging run's network is not the evaluated `{tmp_path / name}`'s" in (
            tmp_path / f"ope_{name}" / "report.md").read_text()
        assert noted == bool(perturb), name


@pytest.mark.parametrize("extra, message", [
    (["--estimators", "dm"], "--estimators dm: a PPO policy is evaluated with the estimators its log allows (on a PPO "
     "logger's log ips, snips and dr per request and the session family; on another log of continuous actions "
     "kernel-ipw and kernel-dr); leave --estimators out"),
    (["--pscore", "estimated"], "--pscore estimated: a log of continuous actions holds the density of each action, "
     "with which a PPO policy is evaluated; estimated propensities are for logs of arm or grid actions"),
])
def test_ope_of_a_ppo_policy_refuses_options_it_cannot_honour(ppo_run, tmp_path, extra, message):
    scenario, run = ppo_run
    assert _simulate(scenario, tmp_path / "log", "--policy", f"run:{run}", "--ppo-std-scale", "1.3").exit_code == 0
    result = CliRunner().invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(run),
                                      "--out", str(tmp_path / "ope"), *extra])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "ope").exists()


def test_a_std_scale_outside_its_range_is_refused_by_the_library(ppo_run):
    from fusionsim.envs.scenario import load_scenario
    from fusionsim.experiments.simulate import PolicySpecError, SimulateConfig, logging_policy

    scenario, run = ppo_run
    for scale in (0.001, 1000.0, float("nan")):
        with pytest.raises(PolicySpecError) as caught:
            logging_policy(SimulateConfig(policy=f"run:{run}", ppo_std_scale=scale), load_scenario(scenario),
                           ["popularity", "new_arrivals"])
        assert str(caught.value) == f"--ppo-std-scale {scale}: must be in [0.01, 100]"
