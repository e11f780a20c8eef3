"""Stacking: a meta-ranker learned from logged impressions over every arm's per-candidate signals and the
request context. ``signals``: what it sees (numpy only); ``logistic`` and ``mlp``: the models;
``stacker``: fitting, serving and its files (these import torch)."""

KINDS = ("logistic", "mlp")
"""Stacker kinds: a logistic model with context crosses, or a small MLP."""

TARGETS = ("clicks", "purchases")
"""What a stacker predicts for an impression: a click, or a purchase."""
