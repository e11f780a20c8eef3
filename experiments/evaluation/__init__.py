"""Off-policy evaluation as a library (importable without the command line): the estimators in Open Bandit
Pipeline's conventions (``estimators``), the cross-fitted reward model (``reward_model``) and
:func:`evaluate`, which every OPE flow of the command line goes through."""

from fusionsim.experiments.evaluation.estimators import ESTIMATORS, OPEInputError
from fusionsim.experiments.evaluation.evaluate import evaluate

__all__ = ["ESTIMATORS", "OPEInputError", "evaluate"]
