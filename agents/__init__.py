"""Fusion policies. They see only arrays and spaces: nothing here imports envs or recommenders' models."""

from fusionsim.agents.bandits import UCB1, EpsilonGreedy, GaussianThompson
from fusionsim.agents.base import Policy, check_batch
from fusionsim.agents.joint import JointLinTS, JointLinUCB
from fusionsim.agents.linear import LinTS, LinUCB
from fusionsim.agents.static import ConstantAction, FixedBlend, SingleArm, UniformContinuous, UniformRandom

__all__ = ["ConstantAction", "EpsilonGreedy", "FixedBlend", "GaussianThompson", "JointLinTS", "JointLinUCB", "LinTS",
           "LinUCB", "Policy", "SingleArm", "UCB1", "UniformContinuous", "UniformRandom", "check_batch"]
