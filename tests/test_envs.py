import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import fusionsim.envs  # noqa: F401  (registers the environments)
from fusionsim.envs.vec_env import FusionVecEnv

CASES = [("fusionsim/Fusion-v0", {"action_mode": "arm"}), ("fusionsim/Fusion-v0", {"action_mode": "grid"}),
         ("fusionsim/Fusion-v0", {"action_mode": "weights"}), ("fusionsim/FusionSession-v0", {}),
         ("fusionsim/FusionSession-v0", {"action_mode": "arm"})]


@pytest.mark.parametrize("env_id, kwargs", CASES)
def test_envs_pass_gymnasium_and_sb3_checkers(env_id, kwargs, small):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, scenario=small, **kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
        env.close()


def test_ppo_runs_2048_steps_on_the_session_env(small):
    env = gym.make("fusionsim/FusionSession-v0", scenario=small)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=1, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048


def _rollout(env, seed, n):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    action_rng = np.random.default_rng(seed)
    for _ in range(n):
        obs, reward, terminated, truncated, info = env.step(int(action_rng.integers(env.action_space.n)))
        out += [obs, reward, terminated, truncated, info["slate"], info["clicks"]]
        if terminated or truncated:
            out.append(env.reset()[0])
    return out


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("env_id", ["fusionsim/Fusion-v0", "fusionsim/FusionSession-v0"])
def test_same_seed_same_trajectory_and_other_seed_differs(env_id, small):
    kwargs = {"action_mode": "arm", "scenario": small}
    a = _rollout(gym.make(env_id, **kwargs), 7, 300)
    b = _rollout(gym.make(env_id, **kwargs), 7, 300)
    c = _rollout(gym.make(env_id, **kwargs), 8, 300)
    assert _equal(a, b)
    assert not _equal(a[:50], c[:50])


def test_seeded_reset_restarts_the_shop(small):
    env = gym.make("fusionsim/Fusion-v0", scenario=small)
    first = _rollout(env, 3, 200)
    again = _rollout(env, 3, 200)  # the same env, after 200 steps that changed tastes and histories
    assert _equal(first, again)


def test_two_envs_in_lockstep_stay_equal(small):
    a = gym.make("fusionsim/Fusion-v0", scenario=small, action_mode="weights")
    b = gym.make("fusionsim/Fusion-v0", scenario=small, action_mode="weights")
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    rng = np.random.default_rng(0)
    for _ in range(500):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        ra, rb = a.step(action), b.step(action)
        for x, y in zip(ra[:4], rb[:4]):
            assert np.array_equal(x, y)
        for key in ("slate", "clicks", "purchases", "arm_scores", "candidates"):
            assert np.array_equal(ra[4][key], rb[4][key])


def test_info_and_rewards(small):
    env = gym.make("fusionsim/Fusion-v0", scenario=small, episode_requests=5)
    env.reset(seed=0)
    k, c = small.candidates.slate_size, small.candidates.n_candidates
    for step in range(5):
        obs, reward, terminated, truncated, info = env.step(0)
        assert info["slate"].shape == (k,) and info["arm_scores"].shape == (2, c)
        assert reward == info["clicks"].sum()  # the default reward is clicks
        assert np.isin(info["slate"], info["candidates"]).all()
        assert not terminated and truncated == (step == 4)


def test_session_env_ends_when_the_shopper_leaves(small):
    env = gym.make("fusionsim/FusionSession-v0", scenario=small)
    env.reset(seed=1)
    lengths, steps = [], 0
    while len(lengths) < 50:
        _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        steps += 1
        if terminated or truncated:
            assert terminated == info["session_end"]
            lengths.append(steps)
            steps = 0
            env.reset()
    assert 1 <= min(lengths) and max(lengths) <= small.traffic.max_session_steps
    assert np.mean(lengths) > 1.5


def test_vec_env_steps_sessions_and_reports_terminal_observations(small):
    venv = FusionVecEnv(small, n_envs=64, seed=5)
    obs = venv.reset()
    assert obs.shape == (64, 14)
    ended = 0
    for _ in range(30):
        obs, rewards, dones, infos = venv.step(np.zeros((64, 2), dtype=np.float32))
        assert rewards.shape == (64,) and dones.shape == (64,)
        for i in np.flatnonzero(dones):
            assert infos[i]["terminal_observation"].shape == (14,)
            assert infos[i]["TimeLimit.truncated"] == bool(venv.last_result.truncated[i])
            assert obs[i, 10] == 0.0, "the next observation is a new session's first request"
            ended += 1
    assert ended > 0
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=256, n_epochs=1, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=2048)
