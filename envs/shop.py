"""Assemble a shop: scenario -> world -> the arms that serve it."""

from __future__ import annotations

from envs.scenario import Scenario, load_scenario
from envs.world import World, build_world
from recommenders import NewArrivals, Popularity, Recommender


def default_arms(world: World) -> list[Recommender]:
    """The arms available before any model is trained: popularity (fitted on the purchase history the
    world comes with) and new arrivals (from the public item table)."""
    items = world.catalog.public()
    return [Popularity().fit(world.history, items), NewArrivals().fit(None, items)]


def make_shop(scenario: str | Scenario = "default", arms: list[Recommender] | None = None,
              ) -> tuple[World, list[Recommender]]:
    """Build the world of ``scenario`` (a name, a path or a :class:`Scenario`) and its arms."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    world = build_world(scenario)
    return world, (list(arms) if arms is not None else default_arms(world))
