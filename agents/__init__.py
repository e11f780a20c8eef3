"""Fusion policies. They see only arrays and spaces: nothing here imports envs or recommenders' models."""

from agents.bandits import UCB1, EpsilonGreedy, GaussianThompson
from agents.base import Policy, check_batch
from agents.linear import LinTS, LinUCB
from agents.static import FixedBlend, SingleArm, UniformContinuous, UniformRandom

__all__ = ["EpsilonGreedy", "FixedBlend", "GaussianThompson", "LinTS", "LinUCB", "Policy", "SingleArm", "UCB1",
           "UniformContinuous", "UniformRandom", "check_batch"]
