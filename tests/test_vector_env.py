"""The native vector envs (gymnasium.make_vec with the vector entry point) and the README's training loops."""

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import fusionsim.envs  # noqa: F401  (registers the environments)
from fusionsim.envs.vector_env import FusionSessionVectorEnv, FusionVectorEnv

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block(marker: str) -> str:
    """The README's python code block that contains ``marker`` (the tests run what the README shows)."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if marker in b]
    return block


README_CLEANRL_LOOP = _readme_block('gym.make_vec("fusionsim/FusionSession-v0"')
README_SB3_LOOP = _readme_block("model.learn(total_timesteps=4096)")
README_SERVE_LOOP = _readme_block("sim.serve(policy, mapper)")


def test_readme_cleanrl_loop_runs_unchanged():
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(README_CLEANRL_LOOP, namespace)
    assert len(namespace["returns"]) > 64, "sessions ended and were counted"
    assert namespace["real_next_obs"].shape == (64, 14)


def test_readme_sb3_loop_runs_unchanged():
    namespace = {}
    exec(README_SB3_LOOP, namespace)
    assert namespace["model"].num_timesteps >= 4096
    assert namespace["obs"].shape == (64, 14)


def test_readme_request_path_loop_runs_unchanged():
    namespace = {}
    exec(README_SERVE_LOOP, namespace)
    result, policy = namespace["result"], namespace["policy"]
    assert policy.rounds == 100 * 256
    assert result.actions.shape == (256,) and (result.propensities == 1.0).all(), "LinUCB is deterministic"


@pytest.mark.parametrize("env_id, cls", [("fusionsim/Fusion-v0", FusionVectorEnv),
                                         ("fusionsim/FusionSession-v0", FusionSessionVectorEnv)])
def test_make_vec_builds_the_batched_env_with_its_metadata(env_id, cls, small):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # make_vec warns when autoreset_mode is missing
        envs = gym.make_vec(env_id, num_envs=16, vectorization_mode="vector_entry_point", scenario=small)
        default = gym.make_vec(env_id, num_envs=2, scenario=small)  # the vector entry point is the default
    assert type(envs) is cls and type(default) is cls
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP and envs.metadata["render_modes"] == []
    assert envs.sim.n_slots == 16 and envs.num_envs == 16
    assert envs.observation_space.shape == (16, 14) and envs.single_observation_space.shape == (14,)
    assert envs.max_episode_steps == (100 if env_id == "fusionsim/Fusion-v0" else None)
    assert envs.spec.id == env_id


def _vec_rollout(envs, seed, steps):
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    out = [obs]
    for _ in range(steps):
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        out += [obs, rewards, terminated, truncated, infos["slate"], infos["clicks"]]
        if "final_obs" in infos:
            out += [np.stack(infos["final_obs"][infos["_final_obs"]]), infos["_final_obs"]]
    return out


def _equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("env_id", ["fusionsim/Fusion-v0", "fusionsim/FusionSession-v0"])
def test_same_seed_same_trajectory_other_seed_differs(env_id, small):
    def make():
        return gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point", scenario=small,
                            action_mode="arm")

    a, b, c = _vec_rollout(make(), 3, 150), _vec_rollout(make(), 3, 150), _vec_rollout(make(), 4, 150)
    assert _equal(a, b)
    assert not _equal(a[:20], c[:20])


@pytest.mark.parametrize("env_id", ["fusionsim/Fusion-v0", "fusionsim/FusionSession-v0"])
def test_one_sub_env_steps_like_the_single_env(env_id, small):
    """With num_envs=1 the vector env is the single env: same seed, same actions, same trajectory,
    the autoreset (vector) and the reset after an episode end (single) included."""
    steps = 400
    actions = np.random.default_rng(0).integers(0, 2, steps)
    single = gym.make(env_id, scenario=small, action_mode="arm")
    envs = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point", scenario=small,
                        action_mode="arm")
    obs_s, _ = single.reset(seed=9)
    obs_v, _ = envs.reset(seed=9)
    assert np.array_equal(obs_s, obs_v[0])
    ends = 0
    for t, action in enumerate(actions):
        obs_s, reward_s, term_s, trunc_s, info_s = single.step(int(action))
        obs_v, reward_v, term_v, trunc_v, info_v = envs.step(np.array([action]))
        assert (reward_s, term_s, trunc_s) == (reward_v[0], term_v[0], trunc_v[0]), t
        for key in ("slate", "clicks", "purchases", "request_id", "session_id", "revenue"):
            assert np.array_equal(info_s[key], info_v[key][0]), (t, key)
        if term_s or trunc_s:
            ends += 1
            assert np.array_equal(obs_s, info_v["final_obs"][0]), t
            assert not info_v["_slate"][0] and info_v["final_info"]["_slate"][0]
            obs_s, _ = single.reset()
        else:
            assert "final_obs" not in info_v
        assert np.array_equal(obs_s, obs_v[0]), t
    assert ends >= 3


def test_same_step_autoreset_follows_gymnasium(small):
    envs = gym.make_vec("fusionsim/FusionSession-v0", num_envs=64, vectorization_mode="vector_entry_point",
                        scenario=small)
    envs.reset(seed=1)
    seen = 0
    for _ in range(30):
        obs, rewards, terminated, truncated, infos = envs.step(np.zeros((64, 2), np.float32))
        result, ended = envs.last_result, terminated | truncated
        assert rewards.dtype == np.float64 and np.array_equal(rewards, result.reward)
        assert np.array_equal(terminated, result.terminated) and np.array_equal(truncated, result.truncated)
        if not ended.any():
            assert "final_obs" not in infos and "final_info" not in infos
            continue
        seen += ended.sum()
        final = infos["final_obs"]
        assert final.dtype == object and final.shape == (64,)
        assert np.array_equal(infos["_final_obs"], ended) and np.array_equal(infos["_final_info"], ended)
        assert all(final[i] is None for i in np.flatnonzero(~ended))
        assert np.array_equal(np.stack(final[ended]), result.final_contexts[ended])
        assert (obs[ended, 10] == 0.0).all(), "the returned observation is the next session's first request"
        for key in ("slate", "clicks", "revenue", "session_end", "session_id"):
            assert np.array_equal(infos[f"_{key}"], ~ended) and np.array_equal(infos["final_info"][f"_{key}"], ended)
        assert np.array_equal(infos["final_info"]["session_end"][ended], terminated[ended])
    assert seen > 0


def test_request_stream_truncates_at_the_registered_limit(small):
    envs = gym.make_vec("fusionsim/Fusion-v0", num_envs=4, vectorization_mode="vector_entry_point", scenario=small,
                        max_episode_steps=7)
    envs.reset(seed=0)
    for t in range(1, 22):
        obs, _, terminated, truncated, infos = envs.step(np.zeros(4, np.int64))
        assert not terminated.any()
        assert truncated.all() == (t % 7 == 0) and truncated.any() == (t % 7 == 0)
        if t % 7 == 0:
            assert np.array_equal(np.stack(infos["final_obs"]), obs), "the stream goes on: the next request"


def test_session_vector_env_applies_max_episode_steps(small):
    envs = gym.make_vec("fusionsim/FusionSession-v0", num_envs=256, vectorization_mode="vector_entry_point",
                        scenario=small, max_episode_steps=3)
    envs.reset(seed=0)
    length = np.zeros(256, np.int64)
    for _ in range(12):
        _, _, terminated, truncated, _ = envs.step(np.zeros((256, 2), np.float32))
        length += 1
        assert (length[truncated] == 3).all() and (length <= 3).all()
        length[terminated | truncated] = 0
    assert envs.sim.step_in_session.max() < 3


@pytest.mark.parametrize("kwargs, message", [
    ({"num_envs": 2_000_000}, "num_envs = 2000000 is above the bound MAX_SLOTS = 1048576: 2000000 sessions would "
                              "take about 15.7 GiB of memory (8424 bytes each)"),
    ({"num_envs": 0}, "num_envs must be >= 1; got 0"),
    ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps must be None or an int >= 1; got 0"),
    ({"num_envs": 2, "render_mode": "rgb_array"}, "render_mode = 'rgb_array' is not allowed: the vector env does "
                                                  "not render (render_modes is empty); use the single env's 'ansi' "
                                                  "or 'rgb_array'"),
])
def test_bad_vector_env_arguments_are_refused(kwargs, message, small):
    with pytest.raises(ValueError) as err:
        gym.make_vec("fusionsim/FusionSession-v0", vectorization_mode="vector_entry_point", scenario=small, **kwargs)
    assert str(err.value) == message


def test_seed_lists_are_refused(small):
    envs = FusionSessionVectorEnv(num_envs=2, scenario=small)
    with pytest.raises(ValueError, match="seed must be an int or None; got \\[1, 2\\]"):
        envs.reset(seed=[1, 2])
    with pytest.raises(gym.error.ResetNeeded):
        envs.step(np.zeros((2, 2), np.float32))
