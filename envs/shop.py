"""Assemble a shop: scenario -> world -> the arms that serve it."""

from __future__ import annotations

from pathlib import Path

from fusionsim.envs.scenario import Scenario, load_scenario
from fusionsim.envs.world import World, build_world
from fusionsim.recommenders import ArmsFolderError, NewArrivals, Popularity, Recommender, load_arms


def default_arms(world: World) -> list[Recommender]:
    """The arms available before any model is trained: popularity (fitted on the purchase history the
    world comes with) and new arrivals (from the public item table)."""
    items = world.catalog.public()
    return [Popularity().fit(world.history, items), NewArrivals().fit(None, items)]


SESSION_FIELDS = ("search_share", "leave_bias")
"""Fields of a scenario's segments that shape how its shoppers act within a session, not the world they live
in (``build_world`` never reads them): a scenario that changes only these, as ``calibrate`` does when it fits
the arrival mix, keeps its world, and the arms and stackers trained for it."""


def world_fields(world: dict) -> dict:
    """A scenario's ``world`` parameters (as ``scenario_to_dict`` writes them) without the segments'
    :data:`SESSION_FIELDS`: what two worlds must share to be the same world."""
    segments = {name: {k: v for k, v in params.items() if k not in SESSION_FIELDS}
                for name, params in (world.get("segments") or {}).items()}
    return {**world, "segments": segments} if "segments" in world else dict(world)


def world_signature(scenario: Scenario) -> dict:
    """What identifies a world: the scenario's name, seed and world parameters (:func:`world_fields`; arms
    trained on one world are meaningless in another)."""
    return {"scenario": scenario.name, "seed": scenario.seed,
            "world": world_fields(scenario.world.model_dump(mode="json")),
            "events": [e.model_dump(mode="json") for e in scenario.events if e.kind == "new_items"]}


def comparable(signature: dict) -> dict:
    """A :func:`world_signature` with its world reduced to :func:`world_fields`, so that one stored before the
    segments' :data:`SESSION_FIELDS` were left out of signatures compares equal to a new one."""
    return {**signature, "world": world_fields(signature.get("world") or {})}


def same_world(signature: dict, scenario: Scenario) -> bool:
    """Whether the stored ``signature`` identifies the world of ``scenario``."""
    return comparable(signature) == world_signature(scenario)


def make_shop(scenario: str | Scenario = "default", arms: list[Recommender] | None = None,
              base: str | Path | None = None) -> tuple[World, list[Recommender]]:
    """Build the world of ``scenario`` (a name, a path or a :class:`Scenario`) and its arms: ``arms`` as
    given, else the trained arms in the folder ``base`` (from ``fusionsim train-base``), else
    :func:`default_arms`."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if arms is None and base is not None:
        arms, trained_for = load_arms(base)
        if not same_world(trained_for, scenario):
            raise ArmsFolderError(f"--base {base} holds arms trained for scenario '{trained_for['scenario']}' "
                                  f"(seed {trained_for['seed']}), whose world differs from scenario "
                                  f"'{scenario.name}' (seed {scenario.seed})")
    world = build_world(scenario)
    return world, (list(arms) if arms is not None else default_arms(world))
