"""The simulated shop: world, shopper response, candidate stage, batched simulator and Gymnasium envs.

Importing this package registers ``fusionsim/Fusion-v0`` and ``fusionsim/FusionSession-v0``.
"""

from gymnasium.envs.registration import register, registry

from fusionsim.envs.scenario import Scenario, ScenarioError, load_scenario, scenario_names
from fusionsim.envs.simulator import BatchedSimulator, StepResult
from fusionsim.envs.world import World, build_world

for _id, _entry in (("fusionsim/Fusion-v0", "fusionsim.envs.gym_envs:FusionEnv"),
                    ("fusionsim/FusionSession-v0", "fusionsim.envs.gym_envs:FusionSessionEnv")):
    if _id not in registry:
        register(id=_id, entry_point=_entry)

__all__ = ["BatchedSimulator", "Scenario", "ScenarioError", "StepResult", "World", "build_world", "load_scenario",
           "scenario_names"]
