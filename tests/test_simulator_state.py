"""Simulator checkpoints: state_dict / load_state_dict continue a run bit for bit, through an npz file too."""

import dataclasses

import numpy as np
import pytest

from fusionsim.envs.shop import default_arms, make_shop
from fusionsim.envs.simulator import BatchedSimulator, StepResult
from fusionsim.envs.world import build_world
from tests.conftest import small_scenario

SLOTS = 8


def _weights(t: int, n_arms: int) -> np.ndarray:
    """A fixed, step-dependent mix of one-hot and blended weights (SLOTS, A)."""
    rng = np.random.default_rng(t)
    w = rng.dirichlet(np.ones(n_arms), size=SLOTS).astype(np.float32)
    if t % 3 == 0:
        w = np.eye(n_arms, dtype=np.float32)[rng.integers(0, n_arms, SLOTS)]
    return w


def _fields(result: StepResult) -> dict[str, np.ndarray]:
    """Every field of a StepResult as arrays, the request batch and the arm scores included."""
    out = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if field.name == "requests":
            for f in dataclasses.fields(value):
                out[f"requests.{f.name}"] = np.asarray(getattr(value, f.name))
        elif field.name == "arm_scores":
            for i, s in enumerate(value):
                out[f"arm_scores[{i}]"] = s
        else:
            out[field.name] = np.asarray(value)
    return out


def _assert_same_steps(a: list[StepResult], b: list[StepResult]) -> None:
    assert len(a) == len(b)
    for t, (ra, rb) in enumerate(zip(a, b)):
        fa, fb = _fields(ra), _fields(rb)
        assert fa.keys() == fb.keys()
        for key in fa:
            assert fa[key].dtype == fb[key].dtype and fa[key].shape == fb[key].shape, (t, key)
            assert fa[key].tobytes() == fb[key].tobytes(), f"step {t}: {key} differs"


def _resume_matches(scenario, n: int, m: int, tmp_path=None, seed: int = 4, make_arms=None) -> BatchedSimulator:
    """Run n + m steps straight, and n steps + checkpoint + a fresh simulator + m steps; compare.
    ``make_arms(world)`` builds the arms (default: the shop's default arms)."""
    make_arms = make_arms or (lambda world: default_arms(world))
    world = build_world(scenario)
    arms = make_arms(world)
    straight = BatchedSimulator(world, arms, n_slots=SLOTS)
    straight.reset(seed=seed)
    expected = [straight.step(_weights(t, len(arms))) for t in range(n + m)]

    world = build_world(scenario)
    arms = make_arms(world)
    first = BatchedSimulator(world, arms, n_slots=SLOTS)
    first.reset(seed=seed)
    head = [first.step(_weights(t, len(arms))) for t in range(n)]
    state = first.state_dict()
    for value in state.values():
        assert isinstance(value, np.ndarray) and value.dtype.kind in "biufU", value.dtype
    if tmp_path is not None:
        path = tmp_path / "sim.npz"
        np.savez(path, **state)
        with np.load(path, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}

    world = build_world(scenario)  # a fresh world and fresh arms, as a resumed run has
    arms = make_arms(world)
    resumed = BatchedSimulator(world, arms, n_slots=SLOTS)
    resumed.load_state_dict(state)
    tail = [resumed.step(_weights(t, len(arms))) for t in range(n, n + m)]
    _assert_same_steps(expected, head + tail)
    return resumed


def test_resume_continues_bit_for_bit_with_default_arms():
    _resume_matches(small_scenario(), 40, 60)


def test_resume_continues_bit_for_bit_across_drift_events():
    # 2,000 requests a day: the checkpoint at day 2.4 falls after the trend shift (day 2) and before the
    # wave of new items (day 3); the recall index is rebuilt every 0.25 days on both sides of it.
    scenario = small_scenario("drift", **{"traffic.requests_per_day": 2000})
    resumed = _resume_matches(scenario, 600, 200)
    assert resumed.day > 3.0 and resumed._next_shift == 1 and resumed.trend.any()


def test_resume_through_an_npz_file(tmp_path):
    # checkpoint at day 1.8, before the trend shift of day 2
    resumed = _resume_matches(small_scenario("drift", **{"traffic.requests_per_day": 2000}), 450, 200, tmp_path)
    assert resumed._next_shift == 1


def test_resume_restores_the_sequence_arms_cached_states(tmp_path):
    import torch

    from fusionsim.recommenders import SequenceModel
    from fusionsim.recommenders.sequence import GRUModule

    def make_arms(world):
        torch.manual_seed(0)  # the same weights for every copy of the arm (no training needed here)
        sequence = SequenceModel(dim=16, train={"device": "cpu", "progress": False})
        sequence.load_state({k: v.numpy() for k, v in GRUModule(world.catalog.n_items, 16).state_dict().items()})
        return default_arms(world) + [sequence]

    resumed = _resume_matches(small_scenario(), 60, 60, tmp_path, make_arms=make_arms)
    assert len(resumed.arms[2].serving_state()["h"]) > 0, "the cache was restored and used"
    state = resumed.state_dict()
    del state["arm2/recent"]
    with pytest.raises(ValueError) as err:
        resumed.load_state_dict(state)
    assert str(err.value) == "state has no key 'arm2/recent': arm 2 ('sequence') keeps serving state ['h', 'recent']"


def test_state_keeps_the_world_unchanged():
    world, arms = make_shop(small_scenario())
    before = {k: v.copy() for k, v in vars(world.population).items()}
    catalog_launch = world.catalog.launch_day.copy()
    sim = BatchedSimulator(world, arms, n_slots=SLOTS)
    sim.reset(seed=0)
    for t in range(200):
        sim.step(_weights(t, len(arms)))
    for key, value in before.items():
        assert np.array_equal(vars(world.population)[key], value), key
    assert np.array_equal(world.catalog.launch_day, catalog_launch)
    assert not np.array_equal(sim.recent_items, world.population.recent_items), "the simulator's own copy moved"


def test_a_state_of_another_slot_count_is_refused_with_the_sizes():
    world, arms = make_shop(small_scenario())
    sim = BatchedSimulator(world, arms, n_slots=4)
    sim.reset(seed=0)
    other = BatchedSimulator(world, arms, n_slots=SLOTS)
    with pytest.raises(ValueError) as err:
        other.load_state_dict(sim.state_dict())
    assert str(err.value) == "state['n_slots'] is 4; this simulator has n_slots = 8 (build it with n_slots=4)"


def _state(n_slots: int = SLOTS):
    world, arms = make_shop(small_scenario())
    sim = BatchedSimulator(world, arms, n_slots=n_slots)
    sim.reset(seed=0)
    sim.step(_weights(0, len(arms)))
    return sim, sim.state_dict()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("slot/fatigue"), "state has no key 'slot/fatigue': a simulator state holds"),
    (lambda s: s.update({"slot/fatigue": np.zeros(3, np.float32)}),
     "state['slot/fatigue'] has shape (3,) and dtype float32; this simulator (n_slots = 8) needs shape (8,) and "
     "dtype float32"),
    (lambda s: s.update({"slot/satiation": np.zeros((8, 6), np.float64)}),
     "state['slot/satiation'] has shape (8, 6) and dtype float64; this simulator (n_slots = 8) needs shape "
     "(8, 6) and dtype float32"),
    (lambda s: s.update({"candidates/pool": np.zeros((2, 2), np.int32)}),
     "state['candidates/pool'] has shape (2, 2) and dtype int32; this simulator (n_slots = 8) needs shape "
     "(any,) and dtype int32"),
    (lambda s: s.update({"extra": np.zeros(1)}), "state key 'extra' is not a simulator state key"),
    (lambda s: s.update({"arm7/h": np.zeros(1)}), "state key 'arm7/h' names no arm: this simulator has arms 0..1"),
    (lambda s: s.update({"arm0/h": np.zeros(1)}), "arm 'popularity' keeps no serving state; got arrays ['h']"),
    (lambda s: s.update({"arm_names": np.array(["popularity", "mf"])}),
     "state['arm_names'] is ['popularity', 'mf']; this simulator's arms are ['popularity', 'new_arrivals']"),
    (lambda s: s.update({"format": np.array("something else")}),
     "state['format'] is 'something else'; this simulator reads 'fusionsim.BatchedSimulator/1'"),
])
def test_bad_states_are_refused_by_key(change, message):
    sim, state = _state()
    before = sim.state_dict()
    change(state)
    with pytest.raises(ValueError) as err:
        sim.load_state_dict(state)
    assert str(err.value).startswith(message), str(err.value)
    after = sim.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "a refused state changes nothing"


def test_state_dict_before_reset_is_refused():
    world, arms = make_shop(small_scenario())
    with pytest.raises(RuntimeError, match="call reset\\(\\) before state_dict\\(\\)"):
        BatchedSimulator(world, arms, n_slots=2).state_dict()


def test_loading_keeps_the_generator_object():
    """An env's np_random is the simulator's Generator: loading sets its state in place."""
    sim, state = _state()
    rng = sim.rng
    sim.step(_weights(1, 2))
    sim.load_state_dict(state)
    assert sim.rng is rng
    assert sim.rng.bit_generator.state == _state()[0].rng.bit_generator.state
