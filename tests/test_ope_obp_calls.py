"""The estimators as Open Bandit Pipeline (obp 0.5.7) code calls them: the keyword arguments obp's
OffPolicyEvaluation passes, obp's positional order, obp's dataclass fields and defaults, and obp's checks
(with fusionsim's messages)."""

import dataclasses
import inspect

import numpy as np
import pytest

from fusionsim.experiments.evaluation.estimators import (ESTIMATORS, DirectMethod, DoublyRobust, DoublyRobustWithShrinkage,
                                       InverseProbabilityWeighting, OPEInputError,
                                       SelfNormalizedDoublyRobust, SelfNormalizedInverseProbabilityWeighting,
                                       SwitchDoublyRobust)
from tests.test_ope import ACTION, DIST, EXPECTED, PSCORE, QHAT, REWARD

ALL = [InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting, DirectMethod, DoublyRobust,
       SelfNormalizedDoublyRobust, SwitchDoublyRobust, DoublyRobustWithShrinkage]


def obp_inputs(position=None, action_dist=DIST, q=QHAT, estimated_pscore=None) -> dict:
    """Exactly the keyword arguments obp's ``OffPolicyEvaluation._create_estimator_inputs`` builds for each
    estimator from ``bandit_feedback`` (action, position, reward, context, pscore) and the arguments of
    ``estimate_policy_values`` (the model-based inputs, None when not given)."""
    return {"action": ACTION, "position": position, "reward": REWARD, "context": np.ones((len(ACTION), 3)),
            "pscore": PSCORE, "action_dist": action_dist, "estimated_rewards_by_reg_model": q,
            "estimated_pscore": estimated_pscore, "estimated_importance_weights": None, "action_embed": None,
            "pi_b": None, "p_e_a": None}


def off_policy_evaluation(estimators, inputs: dict, **interval_args) -> dict:
    """What obp's ``OffPolicyEvaluation.estimate_policy_values`` (or ``estimate_intervals``, with
    ``interval_args``) does with a list of estimators: key them by ``estimator_name`` and call each with
    ``**inputs``."""
    by_name = {estimator.estimator_name: estimator for estimator in estimators}
    assert len(by_name) == len(estimators)
    if interval_args:
        return {name: e.estimate_interval(**inputs, **interval_args) for name, e in by_name.items()}
    return {name: e.estimate_policy_value(**inputs) for name, e in by_name.items()}


# obp's defaults: Switch-DR's lambda_ inf is DR, DRos's lambda_ 0 is DM
DEFAULT_VALUES = {"ipw": EXPECTED["ips"], "snipw": EXPECTED["snips"], "dm": EXPECTED["dm"], "dr": EXPECTED["dr"],
                  "sndr": EXPECTED["sndr"], "switch-dr": EXPECTED["dr"], "dr-os": EXPECTED["dm"]}


@pytest.mark.parametrize("position", [None, np.zeros(4, dtype=np.int64)], ids=["no position", "position zeros"])
def test_off_policy_evaluation_drives_every_estimator_with_its_defaults(position):
    values = off_policy_evaluation([cls() for cls in ALL], obp_inputs(position))
    assert values.keys() == DEFAULT_VALUES.keys()
    for name, value in values.items():
        assert value == pytest.approx(DEFAULT_VALUES[name], rel=1e-12), name


def test_off_policy_evaluation_intervals_take_obp_arguments():
    inputs = obp_inputs()
    intervals = off_policy_evaluation([cls() for cls in ALL], inputs, alpha=0.1, n_bootstrap_samples=300,
                                      random_state=12345)
    assert intervals == off_policy_evaluation([cls() for cls in ALL], inputs, alpha=0.1, n_bootstrap_samples=300,
                                              random_state=12345)
    for name, interval in intervals.items():
        assert interval.keys() == {"mean", "90.0% CI (lower)", "90.0% CI (upper)"}
        assert interval["90.0% CI (lower)"] <= DEFAULT_VALUES[name] + 1e-12
        assert interval["90.0% CI (upper)"] >= DEFAULT_VALUES[name] - 1e-12
    state = off_policy_evaluation([DoublyRobust()], inputs, n_bootstrap_samples=300,
                                  random_state=np.random.RandomState(7))
    assert state == off_policy_evaluation([DoublyRobust()], inputs, n_bootstrap_samples=300,
                                          random_state=np.random.RandomState(7))


def test_estimated_pscore_replaces_pscore_when_asked():
    estimated = np.array([0.4, 0.5, 0.5, 0.8])
    inputs = obp_inputs(estimated_pscore=estimated)
    for cls in (InverseProbabilityWeighting, DoublyRobust, DoublyRobustWithShrinkage):
        kwargs = {"lambda_": 1.0} if cls is DoublyRobustWithShrinkage else {}
        with_estimate = cls(**kwargs, use_estimated_pscore=True).estimate_policy_value(**inputs)
        by_hand = cls(**kwargs).estimate_policy_value(**{**inputs, "pscore": estimated})
        assert with_estimate == by_hand != cls(**kwargs).estimate_policy_value(**inputs)
    w = DIST[np.arange(4), ACTION, 0] / estimated
    assert InverseProbabilityWeighting(use_estimated_pscore=True).estimate_policy_value(**inputs) == \
        pytest.approx(np.mean(w * REWARD))


def test_obp_positional_order():
    assert InverseProbabilityWeighting().estimate_policy_value(REWARD, ACTION, DIST, PSCORE) == \
        pytest.approx(EXPECTED["ips"])
    assert DirectMethod().estimate_policy_value(DIST, QHAT) == pytest.approx(EXPECTED["dm"])
    assert DoublyRobust().estimate_policy_value(REWARD, ACTION, DIST, QHAT, PSCORE) == pytest.approx(EXPECTED["dr"])
    assert DoublyRobust(2.0).lambda_ == 2.0 and DoublyRobustWithShrinkage(1.0).lambda_ == 1.0


# obp 0.5.7's dataclass fields (in order) with their defaults
OBP_FIELDS = {
    InverseProbabilityWeighting: [("lambda_", np.inf), ("use_estimated_pscore", False), ("estimator_name", "ipw")],
    SelfNormalizedInverseProbabilityWeighting: [("lambda_", np.inf), ("use_estimated_pscore", False),
                                                ("estimator_name", "snipw")],
    DirectMethod: [("estimator_name", "dm")],
    DoublyRobust: [("lambda_", np.inf), ("use_estimated_pscore", False), ("estimator_name", "dr")],
    SelfNormalizedDoublyRobust: [("lambda_", np.inf), ("use_estimated_pscore", False), ("estimator_name", "sndr")],
    SwitchDoublyRobust: [("lambda_", np.inf), ("use_estimated_pscore", False), ("estimator_name", "switch-dr")],
    DoublyRobustWithShrinkage: [("lambda_", 0.0), ("use_estimated_pscore", False), ("estimator_name", "dr-os")],
}
# obp 0.5.7's arguments of estimate_policy_value (estimate_interval adds alpha, n_bootstrap_samples, random_state)
IPW_ARGS = ("reward", "action", "action_dist", "pscore", "position", "estimated_pscore")
DM_ARGS = ("action_dist", "estimated_rewards_by_reg_model", "position")
DR_ARGS = ("reward", "action", "action_dist", "estimated_rewards_by_reg_model", "pscore", "position",
           "estimated_pscore")
REQUIRED = {IPW_ARGS: 3, DM_ARGS: 2, DR_ARGS: 4}  # obp's arguments without a default come first
OBP_ARGS = {InverseProbabilityWeighting: IPW_ARGS, SelfNormalizedInverseProbabilityWeighting: IPW_ARGS,
            DirectMethod: DM_ARGS, DoublyRobust: DR_ARGS, SelfNormalizedDoublyRobust: DR_ARGS,
            SwitchDoublyRobust: DR_ARGS, DoublyRobustWithShrinkage: DR_ARGS}


@pytest.mark.parametrize("cls", ALL, ids=[c.__name__ for c in ALL])
def test_fields_defaults_and_signatures_are_obps(cls):
    assert [(f.name, f.default) for f in dataclasses.fields(cls)] == OBP_FIELDS[cls]
    for method, extra in ((cls.estimate_policy_value, []),
                          (cls.estimate_interval, [("alpha", 0.05), ("n_bootstrap_samples", 10000),
                                                   ("random_state", None)])):
        parameters = list(inspect.signature(method).parameters.values())
        assert parameters[0].name == "self" and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD
        names = tuple(p.name for p in parameters[1:-1])
        assert names == OBP_ARGS[cls] + tuple(name for name, _ in extra)
        defaults = {p.name: p.default for p in parameters[1:-1]}
        assert all(defaults[name] == default for name, default in extra)
        required = tuple(p.name for p in parameters[1:-1] if p.default is inspect.Parameter.empty)
        assert required == OBP_ARGS[cls][:REQUIRED[OBP_ARGS[cls]]]


def test_shrinkage_defaults_to_dm_and_reaches_dr():
    inputs = obp_inputs()
    dm = DirectMethod().estimate_policy_value(**inputs)
    dr = DoublyRobust().estimate_policy_value(**inputs)
    assert DoublyRobustWithShrinkage().estimate_policy_value(**inputs) == dm == pytest.approx(EXPECTED["dm"])
    assert DoublyRobustWithShrinkage(lambda_=np.inf).estimate_policy_value(**inputs) == dr
    assert DoublyRobustWithShrinkage(lambda_=1.0).estimate_policy_value(**inputs) == \
        pytest.approx(EXPECTED["dr-os(1)"], rel=1e-12)
    assert ESTIMATORS["dr-os"]().lambda_ == 0.0 and ESTIMATORS["switch-dr"]().lambda_ == np.inf
    # a deterministic evaluation policy gives rounds with w = 0: still exactly DM (no 0/0)
    greedy = np.zeros_like(DIST)
    greedy[:, 1, 0] = 1.0  # rounds 0 and 3 logged action 0: w = 0
    greedy_inputs = obp_inputs(action_dist=greedy)
    assert DoublyRobustWithShrinkage().estimate_policy_value(**greedy_inputs) == \
        DirectMethod().estimate_policy_value(**greedy_inputs) == pytest.approx((0.3 + 0.4 + 0.7 + 0.2) / 4)


def test_self_normalised_estimators_do_not_clip_as_in_obp():
    inputs = obp_inputs()
    assert SelfNormalizedInverseProbabilityWeighting(lambda_=1.0).estimate_policy_value(**inputs) == \
        SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**inputs)
    assert SelfNormalizedDoublyRobust(lambda_=1.0).estimate_policy_value(**inputs) == \
        SelfNormalizedDoublyRobust().estimate_policy_value(**inputs)


LAMBDA = "lambda_ must be a number >= 0 (np.inf allowed); got "
BAD_HYPERPARAMETERS = [
    (DoublyRobustWithShrinkage, {"lambda_": -1.0}, ValueError, LAMBDA + "-1.0"),
    (SwitchDoublyRobust, {"lambda_": -0.5}, ValueError, LAMBDA + "-0.5"),
    (InverseProbabilityWeighting, {"lambda_": float("nan")}, ValueError, LAMBDA + "nan"),
    (DoublyRobust, {"lambda_": -2}, ValueError, LAMBDA + "-2"),
    (DoublyRobustWithShrinkage, {"lambda_": "5"}, TypeError, LAMBDA + "'5' (str)"),
    (DoublyRobust, {"use_estimated_pscore": 1}, TypeError, "use_estimated_pscore must be True or False; got 1 (int)"),
]


@pytest.mark.parametrize("cls, kwargs, kind, message", BAD_HYPERPARAMETERS, ids=[m for *_, m in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_raise_at_construction(cls, kwargs, kind, message):
    with pytest.raises(OPEInputError) as err:
        cls(**kwargs)
    assert isinstance(err.value, kind) and str(err.value) == message


SLOTS = np.repeat(DIST, 3, axis=2)  # the same distribution in each of 3 slots
NO_POSITION = ("position must be given when action_dist has several slots; got None with action_dist.shape[2] = 3 "
               "(give the slot of each round, integers in [0, 3))")
BAD_CALLS = [
    (InverseProbabilityWeighting(), dict(action_dist=SLOTS), NO_POSITION),
    (DirectMethod(), dict(action_dist=SLOTS, estimated_rewards_by_reg_model=np.repeat(QHAT, 3, axis=2)), NO_POSITION),
    (DoublyRobustWithShrinkage(), dict(action_dist=SLOTS, estimated_rewards_by_reg_model=np.repeat(QHAT, 3, axis=2)),
     NO_POSITION),
    (InverseProbabilityWeighting(), dict(pscore=None), "ipw needs pscore (or use_estimated_pscore=True with "
                                                       "estimated_pscore); got None"),
    (DoublyRobust(use_estimated_pscore=True), {},
     "dr has use_estimated_pscore=True and needs estimated_pscore; got None"),
    (SelfNormalizedInverseProbabilityWeighting(use_estimated_pscore=True),
     dict(estimated_pscore=np.array([0.5, 0.0, 0.25, 0.75])), "estimated_pscore must be in (0, 1]; got 0.0 at row 1"),
    (SwitchDoublyRobust(), dict(estimated_rewards_by_reg_model=None), "switch-dr needs estimated_rewards_by_reg_model"),
]


@pytest.mark.parametrize("estimator, change, message", BAD_CALLS, ids=[m[:40] for *_, m in BAD_CALLS])
def test_bad_obp_calls_name_the_argument(estimator, change, message):
    with pytest.raises(OPEInputError) as err:
        estimator.estimate_policy_value(**{**obp_inputs(), **change})
    assert str(err.value) == message
    with pytest.raises(OPEInputError) as err:
        estimator.estimate_interval(**{**obp_inputs(), **change}, n_bootstrap_samples=10)
    assert str(err.value) == message
