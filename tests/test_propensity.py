"""Estimated propensities: the cross-fitted behaviour model recovers a known logger, clips, and refuses bad
input with one line."""

import numpy as np
import pytest

from fusionsim.experiments.evaluation.estimators import OPEInputError
from fusionsim.experiments.evaluation.propensity import cross_fitted_propensities


def _softmax_log(n=20_000, n_actions=5, seed=0):
    rng = np.random.default_rng(seed)
    contexts = rng.standard_normal((n, 3))
    logits = contexts @ rng.normal(0.0, 1.0, (3, n_actions))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    actions = np.minimum((p.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1), n_actions - 1)
    return contexts, actions, p[np.arange(n), actions]


def test_a_context_dependent_logger_is_recovered():
    contexts, actions, truth = _softmax_log()
    estimated = cross_fitted_propensities(contexts, actions, 5)
    assert np.mean(np.abs(estimated.pscore / truth - 1.0)) < 0.05
    assert estimated.log_loss < np.log(5) and estimated.clip == pytest.approx(0.02)
    assert estimated.clipped == pytest.approx(np.mean(estimated.pscore == 0.02), abs=1e-12)
    # the same seed gives the same bytes; a round's own action never enters its own fit (cross-fitting)
    np.testing.assert_array_equal(cross_fitted_propensities(contexts, actions, 5).pscore, estimated.pscore)


def test_a_uniform_logger_comes_out_uniform_and_constant_contexts_are_dropped():
    rng = np.random.default_rng(1)
    contexts = np.column_stack([np.ones(8000), rng.random((8000, 2))])  # a constant column, as context bias terms are
    actions = rng.integers(0, 4, 8000)
    estimated = cross_fitted_propensities(contexts, actions, 4, n_folds=3)
    assert np.abs(estimated.pscore - 0.25).max() < 0.05 and estimated.clipped == 0.0


def test_clipping_bounds_the_weights():
    contexts, actions, truth = _softmax_log(n_actions=5, seed=2)
    estimated = cross_fitted_propensities(contexts, actions, 5, clip=0.15)
    assert estimated.pscore.min() == 0.15 and 0 < estimated.clipped < 1


@pytest.mark.parametrize("args, message", [
    ((np.zeros((3, 2)), np.array([0, 1]), 2), "contexts must be (n, D) with one row per action; got (3, 2) for 2 "
                                              "actions"),
    ((np.zeros((3, 2)), np.array([0, 1, 2]), 2), "actions must be integers in [0, 2); got 2 at row 2"),
    ((np.zeros((3, 2)), np.array([0.5, 1, 0]), 2), "actions must be integers in [0, 2); got 0.5 at row 0"),
    ((np.zeros((3, 2)), np.array([0, 1, 0]), 2, 4), "n_folds must be in [2, 3] (the rounds); got 4"),
    ((np.zeros((3, 2)), np.array([0, 1, 0]), 2, 2, 0.6), "clip must be in (0, 1 / n_actions = 0.5]; got 0.6"),
])
def test_bad_input_is_one_line(args, message):
    with pytest.raises(OPEInputError) as raised:
        cross_fitted_propensities(*args)
    assert str(raised.value) == message
