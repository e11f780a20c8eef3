"""fusionsim's own data in the schemas of ``envs.calibration.schema``, so calibration and fidelity work on
a simulated shop exactly as on a real one: a world's public catalog, and a simulate log exploded to one
row per shown item."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusionsim.envs.world import World


def catalog_of_world(world: World) -> pd.DataFrame:
    """The world's items as a catalog table (what a shop knows: id, ``top/leaf`` category path, price,
    brand, launch day; nothing hidden)."""
    items = world.catalog
    return pd.DataFrame({
        "item_id": np.arange(items.n_items, dtype=np.int64),
        "category": [f"top{t}/leaf{leaf}" for t, leaf in zip(items.top.tolist(), items.leaf.tolist())],
        "price": items.price.astype(np.float64),
        "brand": [f"brand{b}" for b in items.brand.tolist()],
        "launch_date": items.launch_day.astype(np.float64),
    })


def impressions_of_log(log: pd.DataFrame, arm_names: list[str], prices: np.ndarray | None = None,
                       log_relative_prices: np.ndarray | None = None) -> pd.DataFrame:
    """A simulate log (``envs.logs``, one row per request, read by ``read_interaction_log``) as an impression
    log, one row per shown item in slate order (position 0 = top): timestamp in simulated days, the
    logging policy's discrete action and its propensity (``action_propensity``), each arm's z-score of the item as
    ``score_<arm>``; with ``prices`` (n_items,) the revenue of each bought item; with ``log_relative_prices``
    (n_items,) (``Catalog.log_relative_price``) each shown item's ``log_relative_price``."""
    log = log.sort_values("request_id", kind="stable")
    slates = np.stack(log["slate"].to_numpy())
    n, k = slates.shape

    def per_item(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, k)

    query = np.stack(log["query"].to_numpy())
    words = [" ".join(str(w) for w in row if w >= 0) for row in query.tolist()]
    out = pd.DataFrame({
        "request_id": per_item(log["request_id"].to_numpy(np.int64)),
        "timestamp": per_item(log["t"].to_numpy(np.float64)),
        "user_id": per_item(log["user_id"].to_numpy(np.int64)),
        "session_id": per_item(log["session_id"].to_numpy(np.int64)),
        "surface": per_item(log["surface"].astype(str).to_numpy()),
        "query": per_item(np.array(words, dtype=object)),
        "device": per_item(log["device"].astype(str).to_numpy()),
        "segment": per_item(log["segment"].astype(str).to_numpy()),
        "position": np.tile(np.arange(k, dtype=np.int64), n),
        "item_id": slates.reshape(-1).astype(np.int64),
        "click": np.stack(log["clicks"].to_numpy()).reshape(-1).astype(np.int64),
        "purchase": np.stack(log["purchased"].to_numpy()).reshape(-1).astype(np.int64),
    })
    if prices is not None:
        out["revenue"] = np.where(out["purchase"].to_numpy() == 1, prices[out["item_id"].to_numpy()], 0.0)
    if log_relative_prices is not None:
        out["log_relative_price"] = np.asarray(log_relative_prices, dtype=np.float64)[out["item_id"].to_numpy()]
    actions = log["action"].to_numpy(np.int64)
    if (actions >= 0).all():  # discrete actions: their propensity is a probability (a density otherwise)
        out["action"] = per_item(actions)
        out["action_propensity"] = per_item(log["propensity"].to_numpy(np.float64))
    for arm in arm_names:
        out[f"score_{arm}"] = np.stack(log[f"zscore_{arm}"].to_numpy()).reshape(-1).astype(np.float64)
    return out
