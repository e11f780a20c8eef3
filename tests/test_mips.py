"""MIPS (marginalised IPS over action embeddings) and SNMIPS: hand-computed cases, IPS as the special case of
one embedding per action, unbiasedness without a direct effect (exactly over the logging distribution and
within three standard errors on a sample), bias with one, lower variance than IPS, the grid embeddings,
bootstrap intervals and bad input."""

import re

import numpy as np
import pytest

from fusionsim.envs.fusion import simplex_grid
from fusionsim.experiments.evaluation.estimators import (InverseProbabilityWeighting, OPEInputError,
                                                         OPEInputTypeError, SelfNormalizedInverseProbabilityWeighting)
from fusionsim.experiments.evaluation.mips import (MIPS, MIPS_ESTIMATORS, SNMIPS,
                                                   MarginalizedInverseProbabilityWeighting,
                                                   SelfNormalizedMarginalizedInverseProbabilityWeighting,
                                                   coarse_grid_embedding, deterministic_p_e_a, grid_embedding,
                                                   largest_arm_embedding, marginal_importance_weights)

# ---------------------------------------------------------------------------------------------------------------
# Three rounds, four actions, two embedding values: e(a) = [0, 0, 1, 1].
EMBEDDING = np.array([0, 0, 1, 1])
PI_B = np.array([[0.25, 0.25, 0.25, 0.25], [0.125, 0.125, 0.25, 0.5], [0.5, 0.25, 0.125, 0.125]])
PI_E = np.array([[0.5, 0.125, 0.25, 0.125], [0.0, 0.5, 0.5, 0.0], [0.125, 0.125, 0.25, 0.5]])
ACTION = np.array([1, 2, 3])
REWARD = np.array([1.0, 0.5, 2.0])
HAND = {"reward": REWARD, "action": ACTION, "action_embed": EMBEDDING[ACTION][:, None], "pi_b": PI_B[:, :, None],
        "action_dist": PI_E[:, :, None], "p_e_a": deterministic_p_e_a(EMBEDDING)}
# By hand, w = p(e | x, pi_e) / p(e | x, pi_b), summing each policy over the actions that share the logged e:
#   row 0: a = 1, e = 0: (0.5 + 0.125) / (0.25 + 0.25) = 1.25        (IPS: 0.125 / 0.25 = 0.5)
#   row 1: a = 2, e = 1: (0.5 + 0.0) / (0.25 + 0.5) = 2 / 3          (IPS: 0.5 / 0.25 = 2)
#   row 2: a = 3, e = 1: (0.25 + 0.5) / (0.125 + 0.125) = 3          (IPS: 0.5 / 0.125 = 4)
W = np.array([1.25, 2 / 3, 3.0])
WR = 1.25 * 1.0 + (2 / 3) * 0.5 + 3.0 * 2.0  # 7.58333...


def test_hand_computed_weights_and_values():
    assert marginal_importance_weights(HAND["action"], HAND["action_embed"], HAND["pi_b"], HAND["action_dist"],
                                       HAND["p_e_a"]) == pytest.approx(W, rel=1e-12)
    assert MIPS(n_actions=4).estimate_policy_value(**HAND) == pytest.approx(WR / 3, rel=1e-12)
    assert SNMIPS(n_actions=4).estimate_policy_value(**HAND) == pytest.approx(WR / (1.25 + 2 / 3 + 3.0), rel=1e-12)


def test_shorthand_shapes_give_the_same_value():
    """pi_b as (n, n_actions), action_embed as (n,), p_e_a as (n_actions, n_values): the same estimate."""
    short = {**HAND, "pi_b": PI_B, "action_embed": EMBEDDING[ACTION], "p_e_a": deterministic_p_e_a(EMBEDDING)[:, :, 0]}
    assert MIPS(4).estimate_policy_value(**short) == pytest.approx(WR / 3, rel=1e-12)


def test_stochastic_embedding_by_hand():
    # p(e = 0 | a) = [1, 0.5, 0.5, 0]; pi_b uniform; two rounds
    p_e_a = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])[:, :, None]
    arrays = {"reward": np.array([1.0, 3.0]), "action": np.array([1, 2]), "action_embed": np.array([[0], [1]]),
              "pi_b": np.full((2, 4, 1), 0.25),
              "action_dist": np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])[:, :, None], "p_e_a": p_e_a}
    # row 0, e = 0: pi_b: 0.25 * (1 + 0.5 + 0.5 + 0) = 0.5; pi_e: 0.5 * 1 + 0.5 * 0.5 = 0.75 -> w = 1.5
    # row 1, e = 1: pi_b: 0.25 * (0 + 0.5 + 0.5 + 1) = 0.5; pi_e: 0.5 * 0.5 + 0.5 * 1 = 0.75 -> w = 1.5
    assert MIPS(4).estimate_policy_value(**arrays) == pytest.approx((1.5 * 1 + 1.5 * 3) / 2, rel=1e-12)
    assert SNMIPS(4).estimate_policy_value(**arrays) == pytest.approx(2.0, rel=1e-12)


def test_two_dimensions_use_the_joint_marginal():
    # e(a) = (a // 2, a % 2): the pair identifies the action, so w(x, e) = w(x, a) = 0.5 / 0.25 = 2 (IPS).
    # obp's product of per-dimension marginals would give (0.5 * 0.5) / (0.5 * 0.5) = 1.
    p_e_a = np.zeros((4, 2, 2))
    for a in range(4):
        p_e_a[a, a // 2, 0] = p_e_a[a, a % 2, 1] = 1.0
    value = MIPS(4).estimate_policy_value(reward=np.array([1.0]), action=np.array([0]), action_embed=np.array([[0, 0]]),
                                          pi_b=np.full((1, 4), 0.25), action_dist=np.array([[[0.5], [0], [0], [0.5]]]),
                                          p_e_a=p_e_a)
    assert value == pytest.approx(2.0, rel=1e-12)


def test_positions_select_the_slot_of_each_round():
    # two slots; round 0 at slot 0, round 1 at slot 1; e(a) = [0, 0, 1, 1]
    pi_b = np.zeros((2, 4, 2))
    pi_b[:, :, 0] = 0.25
    pi_b[:, :, 1] = [0.5, 0.25, 0.125, 0.125]
    pi_e = np.zeros((2, 4, 2))
    pi_e[:, :, 0] = [1.0, 0.0, 0.0, 0.0]
    pi_e[:, :, 1] = [0.0, 0.0, 0.5, 0.5]
    value = MIPS(4).estimate_policy_value(reward=np.array([1.0, 1.0]), action=np.array([1, 2]),
                                          action_embed=np.array([0, 1]), pi_b=pi_b, action_dist=pi_e,
                                          p_e_a=deterministic_p_e_a(EMBEDDING), position=np.array([0, 1]))
    # round 0, slot 0, e = 0: 1.0 / 0.5 = 2; round 1, slot 1, e = 1: 1.0 / 0.25 = 4
    assert value == pytest.approx(3.0, rel=1e-12)


def test_extra_arrays_of_obps_offpolicyevaluation_are_ignored():
    extra = {"pscore": PI_B[np.arange(3), ACTION], "estimated_rewards_by_reg_model": np.zeros((3, 4, 1)),
             "context": np.zeros((3, 2)), "estimated_importance_weights": np.ones(3)}
    assert MIPS(4).estimate_policy_value(**HAND, **extra) == MIPS(4).estimate_policy_value(**HAND)


def test_names_and_fields_are_obps():
    assert MIPS is MarginalizedInverseProbabilityWeighting
    assert SNMIPS is SelfNormalizedMarginalizedInverseProbabilityWeighting
    names = {name: cls(2).estimator_name for name, cls in MIPS_ESTIMATORS.items()}
    assert names == {"mipw": "mipw", "snmipw": "snmipw"}
    assert MIPS(4) == MIPS(n_actions=4, embedding_selection_method=None, min_emb_dim=1, delta=0.05)
    assert isinstance(SNMIPS(4), MIPS)


# ---------------------------------------------------------------------------------------------------------------
# One embedding per action: MIPS is IPS.
def random_log(n: int, n_actions: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pi_b = rng.dirichlet(np.ones(n_actions), n)
    pi_e = rng.dirichlet(np.full(n_actions, 0.5), n)
    action = (rng.random(n)[:, None] > np.cumsum(pi_b, axis=1)).sum(axis=1)
    action = np.minimum(action, n_actions - 1)
    return {"reward": rng.random(n), "action": action, "pi_b": pi_b, "action_dist": pi_e[:, :, None]}


def test_one_embedding_per_action_is_ips():
    log = random_log(300, 6, seed=1)
    mips = {**log, "action_embed": log["action"], "p_e_a": deterministic_p_e_a(np.arange(6))}
    ips = {"reward": log["reward"], "action": log["action"], "action_dist": log["action_dist"],
           "pscore": log["pi_b"][np.arange(300), log["action"]]}
    assert MIPS(6).estimate_policy_value(**mips) == pytest.approx(
        InverseProbabilityWeighting().estimate_policy_value(**ips), rel=1e-12)
    assert SNMIPS(6).estimate_policy_value(**mips) == pytest.approx(
        SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**ips), rel=1e-12)
    # a coarser embedding gives a different estimate (the check above can fail)
    coarse = {**log, "action_embed": log["action"] // 3, "p_e_a": deterministic_p_e_a(np.arange(6) // 3)}
    assert abs(MIPS(6).estimate_policy_value(**coarse) - MIPS(6).estimate_policy_value(**mips)) > 1e-3


def test_grid_at_its_own_resolution_is_ips():
    grid = simplex_grid(3, 4)
    assert coarse_grid_embedding(grid, 4).tolist() == list(range(len(grid)))
    finer = coarse_grid_embedding(grid, 8)  # a multiple of 4: still one embedding per point
    assert simplex_grid(3, 8)[finer].tolist() == grid.tolist()


# ---------------------------------------------------------------------------------------------------------------
# A synthetic population with a known truth: 3 context types, 12 actions, e(a) = a // 4 (3 embedding values).
P_X = np.array([0.5, 0.3, 0.2])
N_ACTIONS, GROUP = 12, 4
E_OF_A = np.arange(N_ACTIONS) // GROUP
_rng = np.random.default_rng(7)
POP_PI_B = _rng.dirichlet(np.full(N_ACTIONS, 3.0), 3)              # (x, a), full support
_logits = 3.0 * _rng.standard_normal((3, N_ACTIONS))
POP_PI_E = np.exp(_logits) / np.exp(_logits).sum(axis=1, keepdims=True)
Q_E = np.array([[0.2, 0.5, 0.8], [0.6, 0.3, 0.1], [0.4, 0.9, 0.5]])  # E[r | x, e]
Q_NO_DIRECT = Q_E[:, E_OF_A]                                         # (x, a): through the embedding only
Q_DIRECT = np.clip(Q_NO_DIRECT + np.where(np.arange(N_ACTIONS) % GROUP == 0, 0.3, -0.1), 0, 1)  # + a direct effect


def truth(q: np.ndarray) -> float:
    return float((P_X[:, None] * POP_PI_E * q).sum())


def population(q: np.ndarray) -> dict[str, np.ndarray]:
    """One row per (x, a), its reward scaled by n_rows * p(x) pi_b(a | x): the mean over rows of w r is then
    E_{pi_b}[w(x, e) r], the estimator's expectation over the logging distribution."""
    x, a = np.divmod(np.arange(3 * N_ACTIONS), N_ACTIONS)
    return {"reward": q[x, a] * len(x) * P_X[x] * POP_PI_B[x, a], "action": a, "action_embed": E_OF_A[a],
            "pi_b": POP_PI_B[x], "action_dist": POP_PI_E[x][:, :, None], "p_e_a": deterministic_p_e_a(E_OF_A)}


def sample(q: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.choice(3, size=n, p=P_X)
    a = np.minimum((rng.random(n)[:, None] > np.cumsum(POP_PI_B[x], axis=1)).sum(axis=1), N_ACTIONS - 1)
    return {"reward": (rng.random(n) < q[x, a]).astype(np.float64), "action": a, "action_embed": E_OF_A[a],
            "pi_b": POP_PI_B[x], "action_dist": POP_PI_E[x][:, :, None], "p_e_a": deterministic_p_e_a(E_OF_A)}


def direct_effect_bias(q: np.ndarray) -> float:
    """E_x sum_e p(e | x, pi_e) sum_{a in e} (pi_b(a | x, e) - pi_e(a | x, e)) q(x, a), computed loop by loop."""
    bias = 0.0
    for x in range(3):
        for e in range(3):
            members = E_OF_A == e
            p_b, p_e = POP_PI_B[x, members].sum(), POP_PI_E[x, members].sum()
            bias += P_X[x] * p_e * ((POP_PI_B[x, members] / p_b - POP_PI_E[x, members] / p_e) * q[x, members]).sum()
    return bias


def test_unbiased_over_the_logging_distribution_without_a_direct_effect():
    assert MIPS(N_ACTIONS).estimate_policy_value(**population(Q_NO_DIRECT)) == pytest.approx(truth(Q_NO_DIRECT),
                                                                                             rel=1e-12)


def test_biased_by_the_documented_amount_with_a_direct_effect():
    expected = MIPS(N_ACTIONS).estimate_policy_value(**population(Q_DIRECT))
    bias = direct_effect_bias(Q_DIRECT)
    assert expected - truth(Q_DIRECT) == pytest.approx(bias, rel=1e-9)
    assert abs(bias) > 0.05
    assert direct_effect_bias(Q_NO_DIRECT) == pytest.approx(0.0, abs=1e-12)


def test_sample_estimates_within_three_standard_errors_of_the_truth():
    data = sample(Q_NO_DIRECT, n=20_000, seed=2024)
    w = marginal_importance_weights(data["action"], data["action_embed"], data["pi_b"], data["action_dist"],
                                    data["p_e_a"])
    target = truth(Q_NO_DIRECT)
    mips = MIPS(N_ACTIONS).estimate_policy_value(**data)
    assert (w * data["reward"]).mean() == pytest.approx(mips, rel=1e-12)
    assert abs(mips - target) < 3 * (w * data["reward"]).std(ddof=1) / np.sqrt(len(w))
    snmips = SNMIPS(N_ACTIONS).estimate_policy_value(**data)
    linearised = w * (data["reward"] - snmips) / w.mean()
    assert abs(snmips - target) < 3 * linearised.std(ddof=1) / np.sqrt(len(w))


def test_sample_with_a_direct_effect_is_off_while_ips_is_not():
    data = sample(Q_DIRECT, n=20_000, seed=2025)
    target = truth(Q_DIRECT)
    w = marginal_importance_weights(data["action"], data["action_embed"], data["pi_b"], data["action_dist"],
                                    data["p_e_a"])
    se = (w * data["reward"]).std(ddof=1) / np.sqrt(len(w))
    mips = MIPS(N_ACTIONS).estimate_policy_value(**data)
    assert abs(mips - target) > 5 * se
    assert abs(mips - (target + direct_effect_bias(Q_DIRECT))) < 3 * se
    w_ips = data["action_dist"][np.arange(len(w)), data["action"], 0] / data["pi_b"][np.arange(len(w)), data["action"]]
    ips = (w_ips * data["reward"]).mean()
    assert abs(ips - target) < 3 * (w_ips * data["reward"]).std(ddof=1) / np.sqrt(len(w))


def test_lower_variance_than_ips():
    mips, ips, ratios = [], [], []
    for seed in range(30):
        data = sample(Q_NO_DIRECT, n=2_000, seed=100 + seed)
        identity = {**data, "action_embed": data["action"], "p_e_a": deterministic_p_e_a(np.arange(N_ACTIONS))}
        mips.append(MIPS(N_ACTIONS).estimate_policy_value(**data))
        ips.append(MIPS(N_ACTIONS).estimate_policy_value(**identity))  # = IPS (tested above)
        w = marginal_importance_weights(data["action"], data["action_embed"], data["pi_b"], data["action_dist"],
                                        data["p_e_a"])
        w_ips = marginal_importance_weights(data["action"], data["action"], data["pi_b"], data["action_dist"],
                                            identity["p_e_a"])
        ratios.append((w * data["reward"]).var() / (w_ips * data["reward"]).var())
    assert np.var(mips) < 0.7 * np.var(ips)
    assert max(ratios) < 1.0
    # both centred on the truth over the replicates
    assert abs(np.mean(mips) - truth(Q_NO_DIRECT)) < 3 * np.std(mips, ddof=1) / np.sqrt(30)


# ---------------------------------------------------------------------------------------------------------------
# Grid embeddings
def test_largest_arm_embedding_of_the_grid():
    assert largest_arm_embedding(simplex_grid(2, 4)).tolist() == [0, 1, 0, 0, 1]  # [.75 .25] [.5 .5] [.25 .75]
    grid = simplex_grid(3, 4)
    ids = largest_arm_embedding(grid)
    assert ids[:3].tolist() == [0, 1, 2]
    for point, e in zip(grid, ids, strict=True):
        assert point[e] == point.max() and (point[:e] < point.max()).all()  # ties go to the first arm


def test_coarse_grid_embedding_rounds_to_the_coarse_grid():
    fine = simplex_grid(2, 4)  # rounded to simplex_grid(2, 2): [1, 0], [0, 1], [0.5, 0.5]
    assert coarse_grid_embedding(fine, 2).tolist() == [0, 1, 0, 2, 1]
    three = simplex_grid(3, 4)
    rounded = simplex_grid(3, 2)[coarse_grid_embedding(three, 2)]
    index = {tuple(p): i for i, p in enumerate(three.tolist())}
    assert rounded[index[(0.75, 0.25, 0.0)]].tolist() == [1.0, 0.0, 0.0]
    assert rounded[index[(0.25, 0.75, 0.0)]].tolist() == [0.0, 1.0, 0.0]   # equal remainders: the larger weight
    assert rounded[index[(0.25, 0.25, 0.5)]].tolist() == [0.5, 0.0, 0.5]   # equal remainders and weights: first arm
    assert rounded[index[(0.5, 0.25, 0.25)]].tolist() == [0.5, 0.5, 0.0]   # equal remainders and weights: first arm
    assert (np.abs(rounded - three) <= 0.5).all()
    assert grid_embedding(three, "coarse-grid", 2).tolist() == coarse_grid_embedding(three, 2).tolist()
    assert grid_embedding(three).tolist() == largest_arm_embedding(three).tolist()
    assert len(set(coarse_grid_embedding(three, 2).tolist())) < len(three)


def test_deterministic_p_e_a():
    p = deterministic_p_e_a(np.array([1, 0, 1]), n_embeddings=3)
    assert p.shape == (3, 3, 1)
    assert p[:, :, 0].tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]


# ---------------------------------------------------------------------------------------------------------------
# Intervals
@pytest.mark.parametrize("cls", [MIPS, SNMIPS])
def test_interval_keys_containment_and_determinism(cls):
    data = sample(Q_NO_DIRECT, n=2_000, seed=5)
    estimator = cls(N_ACTIONS)
    value = estimator.estimate_policy_value(**data)
    interval = estimator.estimate_interval(**data, n_bootstrap_samples=2000, random_state=3)
    assert list(interval) == ["mean", "95.0% CI (lower)", "95.0% CI (upper)"]
    assert interval["95.0% CI (lower)"] < value < interval["95.0% CI (upper)"]
    assert interval["mean"] == pytest.approx(value, abs=0.01)
    assert estimator.estimate_interval(**data, n_bootstrap_samples=2000, random_state=3) == interval
    assert estimator.estimate_interval(**data, n_bootstrap_samples=2000, random_state=4) != interval
    narrow = estimator.estimate_interval(**data, alpha=0.5, n_bootstrap_samples=2000, random_state=3)
    assert list(narrow) == ["mean", "50.0% CI (lower)", "50.0% CI (upper)"]
    assert interval["95.0% CI (lower)"] < narrow["50.0% CI (lower)"] < narrow["50.0% CI (upper)"] \
        < interval["95.0% CI (upper)"]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: each case's exact message.
def _with(**changes):
    return {**HAND, **changes}


_PI_B_SHORT_ROW1 = PI_B.copy()
_PI_B_SHORT_ROW1[1] = [0.125, 0.125, 0.25, 0.375]
_PI_B_NEGATIVE = PI_B.copy()
_PI_B_NEGATIVE[1] = [-0.125, 0.375, 0.25, 0.5]
_PI_B_NO_E1_ROW2 = PI_B.copy()
_PI_B_NO_E1_ROW2[2] = [0.5, 0.5, 0.0, 0.0]
_PI_B_NO_A3_ROW2 = PI_B.copy()
_PI_B_NO_A3_ROW2[2] = [0.25, 0.25, 0.5, 0.0]
_P_E_A = deterministic_p_e_a(EMBEDDING)
_P_E_A_SHORT = _P_E_A.copy()
_P_E_A_SHORT[2, :, 0] = [0.5, 0.0]
_P_E_A_OUTSIDE = _P_E_A.copy()
_P_E_A_OUTSIDE[0, :, 0] = [1.5, -0.5]
_DIST_SHORT = PI_E[:, :, None].copy()
_DIST_SHORT[0, 0, 0] = 0.25

BAD = [
    ("action_dist 2-D", _with(action_dist=PI_E),
     "action_dist must be 3-D (n_rounds, n_actions, len_list); got shape (3, 4)"),
    ("action_dist sum", _with(action_dist=_DIST_SHORT), "action_dist must sum to 1 over actions; row 0 sums to [0.75]"),
    ("reward shape", _with(reward=REWARD[:2]), "reward must have shape (3,) like action_dist's first axis; got (2,)"),
    ("reward nan", _with(reward=np.array([1.0, np.nan, 0.0])), "reward must be finite; got nan at row 1"),
    ("reward none", _with(reward=None), "mipw needs reward; got None"),
    ("action range", _with(action=np.array([1, 2, 4])), "action must be integers in [0, 4); got 4 at row 2"),
    ("action none", _with(action=None), "mipw needs action; got None"),
    ("position", {**HAND, "position": np.array([0, 0, 1])}, "position must be integers in [0, 1); got 1 at row 2"),
    ("pi_b none", _with(pi_b=None),
     "mipw needs pi_b (n_rounds, n_actions, len_list), the logging policy's distribution in every round; got None"),
    ("pi_b shape", _with(pi_b=np.full((3, 5), 0.2)),
     "pi_b must have action_dist's shape (3, 4, 1) or (3, 4); got (3, 5)"),
    ("pi_b negative", _with(pi_b=_PI_B_NEGATIVE),
     "pi_b must hold probabilities; row 1 has a negative or non-finite value"),
    ("pi_b sum 2-D", _with(pi_b=_PI_B_SHORT_ROW1), "pi_b must sum to 1 over actions; row 1 sums to 0.875"),
    ("pi_b sum 3-D", _with(pi_b=_PI_B_SHORT_ROW1[:, :, None]),
     "pi_b must sum to 1 over actions; row 1 sums to [0.875]"),
    ("p_e_a none", _with(p_e_a=None),
     ("mipw needs p_e_a (n_actions, n_cat_per_dim, n_cat_dim), the known p(e | a) (weights estimated from context, "
      "obp's fallback, are not implemented); got None")),
    ("p_e_a ndim", _with(p_e_a=_P_E_A[:, :, :, None]),
     ("p_e_a must be 3-D (n_actions, n_cat_per_dim, n_cat_dim), or 2-D for one embedding dimension; got shape "
      "(4, 2, 1, 1)")),
    ("p_e_a rows", _with(p_e_a=_P_E_A[:3]),
     ("p_e_a must have one row per action (4, action_dist's axis 1) and at least one embedding value and dimension; "
      "got shape (3, 2, 1)")),
    ("p_e_a outside", _with(p_e_a=_P_E_A_OUTSIDE),
     "p_e_a must hold probabilities in [0, 1]; action 0 has a value outside [0, 1] or not finite"),
    ("p_e_a sum", _with(p_e_a=_P_E_A_SHORT),
     "p_e_a must sum to 1 over the embedding values of each action and dimension; action 2, dimension 0 sums to 0.5"),
    ("action_embed none", _with(action_embed=None),
     "mipw needs action_embed (n_rounds, n_cat_dim), the embedding logged with each round; got None"),
    ("action_embed shape", _with(action_embed=np.zeros((3, 2), dtype=int)),
     "action_embed must have shape (3, 1) (n_rounds, n_cat_dim = p_e_a.shape[2]); got (3, 2)"),
    ("action_embed float", _with(action_embed=np.array([[0.0], [1.0], [1.0]])),
     "action_embed must be integers (embedding ids); got dtype float64"),
    ("action_embed range", _with(action_embed=np.array([[0], [1], [2]])),
     "action_embed must be integers in [0, 2) (n_cat_per_dim = p_e_a.shape[1]); got 2 at row 2"),
    ("embedding impossible for the action", _with(action_embed=np.array([[1], [1], [1]])),
     "action_embed must be possible for the logged action: p_e_a gives action 1 embedding 1 probability 0 at row 0"),
    ("zero propensity of the logged embedding", _with(pi_b=_PI_B_NO_E1_ROW2),
     "pi_b must give the logged embedding a positive probability; p(e | x, pi_b) = 0 at row 2 (embedding 1)"),
    ("zero propensity of the logged action", _with(pi_b=_PI_B_NO_A3_ROW2),
     "pi_b must give the logged action a positive probability; got 0 at row 2 (action 3)"),
]


@pytest.mark.parametrize("arrays, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(arrays, message):
    for method in ("estimate_policy_value", "estimate_interval"):
        with pytest.raises(OPEInputError, match=f"^{re.escape(message)}$"):
            getattr(MIPS(4), method)(**arrays)


BAD_SETTINGS = [
    (lambda: MIPS(1), OPEInputError, "n_actions must be an integer >= 2; got 1"),
    (lambda: MIPS(4.0), OPEInputTypeError, "n_actions must be an integer >= 2; got 4.0 (float)"),
    (lambda: MIPS(4, embedding_selection_method="exact"), OPEInputError,
     ("embedding_selection_method must be None (obp's data-driven embedding selection, 'exact' or 'greedy', is not "
      "implemented); got 'exact'")),
    (lambda: MIPS(4, min_emb_dim=0), OPEInputError, "min_emb_dim must be an integer >= 1; got 0"),
    (lambda: MIPS(4, delta=1.5), OPEInputError, "delta must be a number in [0, 1]; got 1.5"),
    (lambda: MIPS(4, delta="0.1"), OPEInputTypeError, "delta must be a number in [0, 1]; got '0.1' (str)"),
    (lambda: MIPS(5).estimate_policy_value(**HAND), OPEInputError,
     "action_dist has 4 actions (axis 1) but n_actions = 5"),
    (lambda: MIPS(4).estimate_interval(**HAND, alpha=1.5), OPEInputError,
     "alpha must be in (0, 1) and n_bootstrap_samples >= 1; got 1.5, 10000"),
    (lambda: grid_embedding(simplex_grid(2, 4), "nearest"), OPEInputError,
     "method must be one of 'largest-arm', 'coarse-grid'; got 'nearest'"),
    (lambda: coarse_grid_embedding(simplex_grid(2, 4), 0), OPEInputError,
     "coarse_resolution must be an integer >= 1; got 0"),
    (lambda: largest_arm_embedding(np.array([[0.5, 0.0], [0.5, 0.5]])), OPEInputError,
     "grid rows must sum to 1 (points of the simplex); row 0 sums to 0.5"),
    (lambda: largest_arm_embedding(np.array([1.0, 0.0])), OPEInputError,
     "grid must be 2-D (n_actions, n_arms) with at least one point and one arm; got shape (2,)"),
    (lambda: deterministic_p_e_a(np.array([0, 2]), n_embeddings=2), OPEInputError,
     "n_embeddings must be an integer > every embedding id (> 2); got 2"),
]


@pytest.mark.parametrize("call, error, message", BAD_SETTINGS, ids=[m.split(";")[0][:40] for _, _, m in BAD_SETTINGS])
def test_bad_settings(call, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()
