"""Fusion policies. They see only arrays and spaces: nothing here imports envs or recommenders."""

from agents.base import Policy, check_batch
from agents.static import FixedBlend, SingleArm, UniformRandom

__all__ = ["FixedBlend", "Policy", "SingleArm", "UniformRandom", "check_batch"]
