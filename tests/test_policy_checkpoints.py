"""Policy checkpoints: a loaded policy continues bit for bit in lockstep with the one that was saved; the
file is arrays + JSON only; corrupt, truncated, foreign and pickle-carrying files are refused by name."""

import json
from pathlib import Path

import numpy as np
import pytest

import fusionsim.agents as agents
from fusionsim.agents import (UCB1, ConstantAction, EpsilonGreedy, FixedBlend, GaussianThompson, JointLinTS,
                              JointLinUCB, LinTS, LinUCB, Policy, SingleArm, UniformContinuous, UniformRandom)

K, D = 5, 6

FACTORIES = {
    "linucb_epsilon": lambda: LinUCB(K, D, alpha=0.7, epsilon=0.3, seed=1),
    "linucb_discounted": lambda: LinUCB(K, D, alpha=0.5, discount=0.95, ridge=2.0, seed=2),
    "linucb_unseeded": lambda: LinUCB(K, D, alpha=0.4, epsilon=0.5),
    "lints": lambda: LinTS(K, D, v=0.3, propensity_draws=8, seed=3),
    "joint_linucb": lambda: JointLinUCB(K, D, 2, K - 1, alpha=0.5, epsilon=0.3, seed=10),
    "joint_lints": lambda: JointLinTS(K, D, 2, K - 1, v=0.3, propensity_draws=8, seed=11),
    "lints_unseeded": lambda: LinTS(K, D, v=0.3, propensity_draws=4, action_mode="grid"),
    "eps": lambda: EpsilonGreedy(K, epsilon=0.3, seed=4),
    "ucb": lambda: UCB1(K, c=0.5, seed=5),
    "ts": lambda: GaussianThompson(K, sigma=0.5, propensity_draws=16, seed=6),
    "uniform": lambda: UniformRandom(K, seed=7),
    "uniform_grid_unseeded": lambda: UniformRandom(K, "grid"),
    "uniform_continuous": lambda: UniformContinuous(3, seed=8),
    "single_arm": lambda: SingleArm(2, K),
    "constant": lambda: ConstantAction(3),
    "fixed_blend": lambda: FixedBlend([0.2, 0.3, 0.5]),
}
BATCHES = [1, 1, 3, 1, 16, 1, 1, 7, 1, 32, 1, 2]
"""Batch sizes of successive act/update steps: the per-round and the batched paths both run."""


def _state(policy: Policy) -> tuple[dict, list]:
    return {k: np.array(v, copy=True) for k, v in policy.state_arrays().items()}, \
        [g.bit_generator.state for g in policy.generators()]


def _assert_same_state(a: Policy, b: Policy) -> None:
    (arrays_a, gens_a), (arrays_b, gens_b) = _state(a), _state(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert gens_a == gens_b


def _step(policy: Policy, contexts: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actions, propensities = policy.act(contexts)
    policy.update(contexts, actions, rewards)
    return actions, propensities


def _stream(seed: int, steps: int):
    """(contexts (B, D), rewards (B,)) for ``steps`` steps of the batch sizes in BATCHES."""
    rng = np.random.default_rng(seed)
    for i in range(steps):
        b = BATCHES[i % len(BATCHES)]
        yield rng.normal(size=(b, D)), (rng.random(b) < 0.4).astype(np.float64)


def test_every_policy_class_is_covered():
    classes = {c for c in vars(agents).values() if isinstance(c, type) and issubclass(c, Policy) and c is not Policy}
    assert {type(make()) for make in FACTORIES.values()} == classes


@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_loaded_policy_continues_in_lockstep(make, tmp_path):
    policy = make()
    for contexts, rewards in _stream(0, 30):
        _step(policy, contexts, rewards)
    path = tmp_path / "policy.npz"
    policy.save(path)
    loaded = type(policy).load(path)
    assert type(loaded) is type(policy) and loaded.config() == policy.config()
    _assert_same_state(loaded, policy)
    for contexts, rewards in _stream(1, 40):
        actions, propensities = _step(policy, contexts, rewards)
        actions_loaded, propensities_loaded = _step(loaded, contexts, rewards)
        np.testing.assert_array_equal(actions_loaded, actions)
        np.testing.assert_array_equal(propensities_loaded, propensities)
        assert actions_loaded.dtype == actions.dtype
        _assert_same_state(loaded, policy)


@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_checkpoint_is_arrays_and_json_only(make, tmp_path):
    policy = make()
    for contexts, rewards in _stream(2, 5):
        _step(policy, contexts, rewards)
    policy.save(tmp_path / "policy.npz")
    with np.load(tmp_path / "policy.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    assert meta == {"format": "fusionsim.policy", "version": 1, "name": policy.name, "config": policy.config(),
                    "generators": [g.bit_generator.state for g in policy.generators()]}
    assert arrays.keys() == policy.state_arrays().keys()
    assert all(a.dtype.kind in "biuf" for a in arrays.values())
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_saving_changes_nothing_in_the_saved_policy(tmp_path):
    """Saving materialises LinUCB's A from A^-1 on the per-round path; the run goes on as if never saved."""
    saved, unsaved = LinUCB(K, D, epsilon=0.2, seed=9), LinUCB(K, D, epsilon=0.2, seed=9)
    for i, (contexts, rewards) in enumerate(_stream(3, 40)):
        if i % 5 == 0:
            saved.save(tmp_path / "p.npz")
        np.testing.assert_array_equal(_step(saved, contexts, rewards)[0], _step(unsaved, contexts, rewards)[0])
    _assert_same_state(saved, unsaved)


# ------------------------------------------------------------------------------------------ refused files
def _plant(path: str) -> None:
    """What a pickle payload would run when unpickled: leave a file behind."""
    Path(path).write_text("executed")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return _plant, (str(self.marker),)


def _saved(tmp_path: Path) -> Path:
    policy = LinUCB(K, D, epsilon=0.1, seed=0)
    for contexts, rewards in _stream(4, 12):
        _step(policy, contexts, rewards)
    path = tmp_path / "linucb.npz"
    policy.save(path)
    return path


def _rewrite(path: Path, meta: dict | None = None, **arrays) -> Path:
    """``path``'s checkpoint with ``meta`` replaced (when given) and ``arrays`` replaced, added, or
    (value None) dropped, written to a new file beside it (object arrays pickled, as ``np.savez`` does)."""
    with np.load(path, allow_pickle=False) as data:
        contents = {k: data[k] for k in data.files}
    if meta is not None:
        contents["__meta__"] = np.array(json.dumps(meta))
    for key, value in arrays.items():
        if value is None:
            del contents[key]
        else:
            contents[key] = value
    out = path.with_name("rewritten.npz")
    with open(out, "wb") as f:
        np.savez(f, **contents)
    return out


def _meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["__meta__"]))


def _beside(path: Path, name: str, data: bytes) -> Path:
    out = path.with_name(name)
    out.write_bytes(data)
    return out


def _npz_beside(path: Path, name: str, save, value) -> Path:
    out = path.with_name(name)
    save(out, value)
    return out


CORRUPT = "is corrupt or not a policy checkpoint"
REFUSED = [
    ("garbage", lambda p: _beside(p, "g.npz", b"not a checkpoint"), CORRUPT),
    ("empty", lambda p: _beside(p, "e.npz", b""), CORRUPT),
    ("truncated to 200 bytes", lambda p: _beside(p, "t.npz", p.read_bytes()[:200]), CORRUPT),
    ("truncated to half", lambda p: _beside(p, "t.npz", p.read_bytes()[:len(p.read_bytes()) // 2]), CORRUPT),
    ("last byte cut", lambda p: _beside(p, "t.npz", p.read_bytes()[:-1]), CORRUPT),
    ("json only", lambda p: _beside(p, "j.json", json.dumps({"name": "linucb", "config": {}}).encode()), CORRUPT),
    ("plain npy", lambda p: _npz_beside(p, "a.npy", np.save, np.zeros(3)), CORRUPT),
    ("foreign npz", lambda p: _npz_beside(p, "f.npz", lambda f, v: np.savez(f, weights=v), np.zeros(3)), CORRUPT),
    ("meta not json", lambda p: _rewrite(p, __meta__=np.array("{not json")), CORRUPT),
    ("meta numeric", lambda p: _rewrite(p, __meta__=np.zeros(2)), CORRUPT),
    ("meta of another program", lambda p: _rewrite(p, meta={"format": "other", "name": "linucb"}), CORRUPT),
    ("meta without a name", lambda p: _rewrite(p, meta={"config": {}}), CORRUPT),
    ("meta is a list", lambda p: _rewrite(p, __meta__=np.array("[1, 2]")), CORRUPT),
    ("written before format versions", lambda p: _rewrite(p, meta={"name": "linucb", "config": _meta(p)["config"]}),
     "has no format version; this fusionsim reads version 1"),
    ("other version", lambda p: _rewrite(p, meta={**_meta(p), "version": 2}),
     "has format version 2; this fusionsim reads version 1"),
    ("other policy", lambda p: _rewrite(p, meta={**_meta(p), "name": "lints"}), "holds a 'lints' policy, not 'linucb'"),
    ("no generator list", lambda p: _rewrite(p, meta={**_meta(p), "generators": {"rng": 1}}),
     "is corrupt: its meta entry lacks the config or the generator states"),
    ("bad config", lambda p: _rewrite(p, meta={**_meta(p), "config": {**_meta(p)["config"], "alpha": -1}}),
     "holds a config that does not build a 'linucb' policy: alpha must be a finite number >= 0; got -1"),
    ("unknown config key", lambda p: _rewrite(p, meta={**_meta(p), "config": {**_meta(p)["config"], "beta": 1}}),
     "holds a config that does not build a 'linucb' policy: LinUCB.__init__() got an unexpected keyword "
     "argument 'beta'"),
    ("config of another size", lambda p: _rewrite(p, meta={**_meta(p), "config": {**_meta(p)["config"],
                                                                                  "n_actions": 3}}),
     f"is corrupt: 'A' has shape ({K}, {D}, {D}); the policy its config builds needs (3, {D}, {D})"),
    ("wrong shape", lambda p: _rewrite(p, b=np.zeros((K, D + 1))),
     f"is corrupt: 'b' has shape ({K}, {D + 1}); the policy its config builds needs ({K}, {D})"),
    ("wrong dtype", lambda p: _rewrite(p, theta=np.zeros((K, D), dtype=np.float32)),
     "is corrupt: 'theta' has dtype float32; the policy its config builds needs float64"),
    ("non-finite statistics", lambda p: _rewrite(p, A_inv=np.full((K, D, D), np.nan)),
     "is corrupt: 'A_inv' holds non-finite values"),
    ("missing array", lambda p: _rewrite(p, b=None), "is corrupt: it lacks the arrays ['b']"),
    ("extra array", lambda p: _rewrite(p, extra=np.zeros(2)),
     "is corrupt: it holds arrays ['extra'] this policy does not have"),
    ("generator count", lambda p: _rewrite(p, meta={**_meta(p), "generators": []}),
     "is corrupt: it holds 0 generator states; the policy its config builds has 1 generators"),
    ("generator kind", lambda p: _rewrite(p, meta={**_meta(p), "generators": [{"bit_generator": "MT19937"}]}),
     "is corrupt: generator state 0 is not a PCG64 state"),
    ("generator values", lambda p: _rewrite(p, meta={**_meta(p), "generators": [
        {**_meta(p)["generators"][0], "state": {"state": "x", "inc": 1}}]}),
     "is corrupt: generator state 0 is not a PCG64 state"),
]


@pytest.mark.parametrize("make_file, message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_bad_checkpoints_are_refused_by_name(make_file, message, tmp_path):
    bad = make_file(_saved(tmp_path))
    with pytest.raises(ValueError) as err:
        LinUCB.load(bad)
    assert str(err.value) == f"checkpoint {bad} {message}"


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(ValueError) as err:
        UniformRandom.load(tmp_path / "nowhere.npz")
    assert str(err.value) == f"checkpoint {tmp_path / 'nowhere.npz'} does not exist"


@pytest.mark.parametrize("where", ["extra member", "meta entry"])
def test_planted_pickle_is_refused_not_executed(where, tmp_path):
    marker = tmp_path / "payload-ran"
    payload = np.array([_Payload(marker)], dtype=object)
    path = _saved(tmp_path)
    planted = _rewrite(path, **({"payload": payload} if where == "extra member" else {"__meta__": payload}))
    key = "payload" if where == "extra member" else "__meta__"
    with np.load(planted, allow_pickle=True) as data:  # the plant is live: unpickling it runs the payload
        data[key]
    assert marker.read_text() == "executed"
    marker.unlink()
    with pytest.raises(ValueError) as err:
        LinUCB.load(planted)
    assert str(err.value) == f"checkpoint {planted} {CORRUPT}"
    assert not marker.exists()


def test_policies_refuse_each_others_checkpoints(tmp_path):
    for make in FACTORIES.values():
        policy = make()
        policy.save(tmp_path / f"{policy.name}.npz")
    for make in FACTORIES.values():
        cls = type(make())
        for other in {type(m()) for m in FACTORIES.values()} - {cls}:
            path = tmp_path / f"{other.name}.npz"
            with pytest.raises(ValueError) as err:
                cls.load(path)
            assert str(err.value) == f"checkpoint {path} holds a '{other.name}' policy, not '{cls.name}'"
