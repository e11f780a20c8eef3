"""The simulated shop: world, shopper response, candidate stage, batched simulator and Gymnasium envs.

Importing this package registers ``fusionsim/Fusion-v0`` (time limit ``max_episode_steps=100`` in the
registry) and ``fusionsim/FusionSession-v0`` (no registry limit: a session ends at the scenario's
``traffic.max_session_steps``). Both have a ``vector_entry_point``: ``gymnasium.make_vec(id, num_envs=N)``
steps N sub-envs with one batched simulator (:mod:`envs.vector_env`).
"""

from gymnasium.envs.registration import register, registry

from fusionsim.envs.scenario import Scenario, ScenarioError, load_scenario, scenario_names
from fusionsim.envs.simulator import MAX_SLOTS, BatchedSimulator, StepResult
from fusionsim.envs.world import World, build_world

FUSION_EPISODE_STEPS = 100
"""Requests per episode of ``fusionsim/Fusion-v0`` (its registered ``max_episode_steps``)."""

for _id, _entry, _vector_entry, _limit in (
        ("fusionsim/Fusion-v0", "fusionsim.envs.gym_envs:FusionEnv", "fusionsim.envs.vector_env:FusionVectorEnv",
         FUSION_EPISODE_STEPS),
        ("fusionsim/FusionSession-v0", "fusionsim.envs.gym_envs:FusionSessionEnv",
         "fusionsim.envs.vector_env:FusionSessionVectorEnv", None)):
    if _id not in registry:
        register(id=_id, entry_point=_entry, vector_entry_point=_vector_entry, max_episode_steps=_limit)

__all__ = ["MAX_SLOTS", "BatchedSimulator", "Scenario", "ScenarioError", "StepResult", "World", "build_world",
           "load_scenario", "scenario_names"]
