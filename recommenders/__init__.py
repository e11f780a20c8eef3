"""Base recommenders, the arms of fusion. Imports nothing from envs, agents or experiments."""

from recommenders.base import (INTERACTION_COLUMNS, InteractionTableError, ItemTable, Recommender, RequestBatch,
                               check_interactions)
from recommenders.new_arrivals import NewArrivals
from recommenders.popularity import Popularity

REGISTRY: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, NewArrivals)}
"""Arm classes by name."""

__all__ = ["INTERACTION_COLUMNS", "InteractionTableError", "ItemTable", "NewArrivals", "Popularity",
           "REGISTRY", "Recommender", "RequestBatch", "check_interactions"]
