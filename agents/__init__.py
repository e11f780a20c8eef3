"""Fusion policies. They see only arrays and spaces: nothing here imports envs or recommenders' models."""

from fusionsim.agents.bandits import UCB1, EpsilonGreedy, GaussianThompson
from fusionsim.agents.base import Policy, check_batch
from fusionsim.agents.linear import LinTS, LinUCB
from fusionsim.agents.static import FixedBlend, SingleArm, UniformContinuous, UniformRandom

__all__ = ["EpsilonGreedy", "FixedBlend", "GaussianThompson", "LinTS", "LinUCB", "Policy", "SingleArm", "UCB1",
           "UniformContinuous", "UniformRandom", "check_batch"]
