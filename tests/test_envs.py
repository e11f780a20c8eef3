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
    env = gym.make("fusionsim/Fusion-v0", scenario=small, max_episode_steps=5)
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


def test_the_registry_owns_the_time_limits(small):
    env = gym.make("fusionsim/Fusion-v0", scenario=small)
    assert env.spec.max_episode_steps == 100
    longer = gym.make("fusionsim/Fusion-v0", scenario=small, max_episode_steps=500)
    assert longer.spec.max_episode_steps == 500
    for e, limit in ((env, 100), (longer, 500)):
        e.reset(seed=0)
        ends = [t for t in range(1, 1001) if e.step(0)[3] and e.reset() is not None]
        assert ends == list(range(limit, 1001, limit))
    # sessions: the scenario's traffic.max_session_steps is the limit; the registry sets none
    session = gym.make("fusionsim/FusionSession-v0", scenario=small)
    assert session.spec.max_episode_steps is None
    capped = gym.make("fusionsim/FusionSession-v0", scenario=small, max_episode_steps=3)
    capped.reset(seed=0)
    steps = 0
    for _ in range(200):
        steps += 1
        _, _, terminated, truncated, _ = capped.step(np.zeros(2, np.float32))
        assert steps <= 3
        if terminated or truncated:
            assert truncated or terminated
            steps = 0
            capped.reset()


def test_sessions_truncate_at_the_scenarios_limit():
    from tests.conftest import small_scenario

    scenario = small_scenario(**{"traffic.max_session_steps": 4})
    env = gym.make("fusionsim/FusionSession-v0", scenario=scenario)
    env.reset(seed=0)
    steps, truncations = 0, 0
    for _ in range(400):
        steps += 1
        _, _, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert truncated == (steps == 4 and not terminated)
        if terminated or truncated:
            truncations += truncated
            steps = 0
            env.reset()
    assert truncations > 0


@pytest.mark.parametrize("env_id", ["fusionsim/Fusion-v0", "fusionsim/FusionSession-v0"])
def test_sb3_make_vec_env_gives_no_render_mode_warning(env_id, small):
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs={"scenario": small})
        venv.reset()
        for _ in range(3):
            venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
        assert venv.render_mode == "rgb_array"  # make_vec_env's default, which the envs now support
        frames = venv.get_images()
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
        venv.close()


def test_without_declared_render_modes_make_vec_env_warns(small, monkeypatch):
    """The warning the test above guards against: an env that declares no render modes."""
    from stable_baselines3.common.env_util import make_vec_env

    from fusionsim.envs.gym_envs import FusionEnv

    monkeypatch.setattr(FusionEnv, "metadata", {"render_modes": []})
    with pytest.warns(UserWarning, match="render_mode='rgb_array' that is not in the possible render_modes"):
        make_vec_env("fusionsim/Fusion-v0", n_envs=1, env_kwargs={"scenario": small})


def test_render_modes(small):
    env = gym.make("fusionsim/Fusion-v0", scenario=small, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (16 * 11, 240, 3)
    _, _, _, _, info = env.step(1)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (16 * 11, 240, 3)
    clicked_rows = np.flatnonzero(info["clicks"])
    blue = (frame[16 * (clicked_rows + 1) + 8, 120] == (70, 130, 230)).all(axis=1) if len(clicked_rows) else []
    assert all(blue)
    text = gym.make("fusionsim/Fusion-v0", scenario=small, render_mode="ansi")
    text.reset(seed=0)
    assert "pending request" in text.render()
    _, _, _, _, info = text.step(0)
    line = text.render()
    assert f"request {info['request_id']} " in line and str(info["slate"].tolist()) in line
    plain = gym.make("fusionsim/Fusion-v0", scenario=small)
    plain.reset(seed=0)
    assert plain.render() is None
    from fusionsim.envs.gym_envs import FusionEnv

    with pytest.raises(ValueError, match="render_mode = 'human' is not allowed: must be None or one of "
                                         "\\['ansi', 'rgb_array'\\]"):
        FusionEnv(scenario=small, render_mode="human")


def test_every_env_declares_its_metadata(small):
    from gymnasium.vector import AutoresetMode

    for env_id in ("fusionsim/Fusion-v0", "fusionsim/FusionSession-v0"):
        assert gym.make(env_id, scenario=small).metadata["render_modes"] == ["ansi", "rgb_array"]
        vec = gym.make_vec(env_id, num_envs=2, scenario=small)
        assert vec.metadata == {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
    sb3 = FusionVecEnv(small, n_envs=2)
    assert sb3.metadata == {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
    assert sb3.render_mode is None


def test_docstrings_tabulate_every_context_feature():
    from fusionsim.envs.context import CONTEXT_FEATURES, observation_table
    from fusionsim.envs.gym_envs import FusionEnv, FusionSessionEnv

    for cls in (FusionEnv, FusionSessionEnv):
        assert observation_table("    ") in cls.__doc__
        assert "{table}" not in cls.__doc__ and "Autoreset" in cls.__doc__
    table = observation_table("")
    for i, (name, low, high, meaning) in enumerate(CONTEXT_FEATURES):
        assert f"| {i} " in table and f" {name} " in table and meaning in table and f"[{low:g}, {high:g}]" in table


@pytest.mark.parametrize("n, message", [
    (10**12, "n_envs = 1000000000000 is above the bound MAX_SLOTS = 1048576: 1000000000000 sessions would take "
             "about 7.5 PiB of memory (8424 bytes each)"),
    (1_048_577, "n_envs = 1048577 is above the bound MAX_SLOTS = 1048576: 1048577 sessions would take about "
                "8.2 GiB of memory (8424 bytes each)"),
    (0, "n_envs must be >= 1; got 0"),
    (2.5, "n_envs must be an int; got 2.5"),
])
def test_vec_env_sizes_above_the_bound_are_refused(n, message, small):
    with pytest.raises(ValueError) as err:
        FusionVecEnv(small, n_envs=n)
    assert str(err.value) == message


def test_simulator_sizes_above_the_bound_are_refused(small_shop):
    from fusionsim.envs.simulator import MAX_SLOTS, BatchedSimulator

    world, arms = small_shop
    with pytest.raises(ValueError) as err:
        BatchedSimulator(world, arms, n_slots=MAX_SLOTS + 1)
    assert str(err.value) == ("n_slots = 1048577 is above the bound MAX_SLOTS = 1048576: 1048577 sessions would "
                              "take about 8.2 GiB of memory (8424 bytes each)")
