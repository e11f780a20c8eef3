"""The Open Bandit Dataset (ZOZOTOWN fashion recommendations; Saito et al. 2021) as fusionsim reads it.

A campaign folder holds ``<campaign>.csv`` (or ``<campaign>.parquet``), one row per round: ``timestamp``,
``item_id`` (0-based), ``position`` (1, 2 or 3: the slot of the three shown at once), ``click`` (0/1),
``propensity_score`` (the logging policy's probability of this item at this position) and the hashed
``user_feature_0..3``; beside it ``item_context.csv`` (one row per item) when the campaign ships one.
Each round is its own impression: the sample does not say which rounds were shown together.

:func:`read_obd` validates a campaign; :func:`impressions_of_obd` turns it into the impression schema of
``envs.calibration.schema`` (one request per round, position 0 = the top slot, the propensity as
``position_propensity``), so the statistics and click models that read that schema read OBD too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OBD_POSITIONS = 3
"""Slots per ZOZOTOWN recommendation (OBD positions 1-3)."""
OBD_COLUMNS = ("item_id", "position", "click", "propensity_score")
"""The columns of a campaign every reader needs."""


class ObdError(ValueError):
    """A folder or campaign file not in the Open Bandit Dataset layout; the message is one line."""


def obd_campaigns(folder: Path) -> list[str]:
    """The campaigns in ``folder``: the stems of its ``*.csv`` and ``*.parquet`` files but ``item_context``."""
    return sorted({p.stem for p in (*folder.glob("*.csv"), *folder.glob("*.parquet")) if p.stem != "item_context"})


def read_obd(folder: Path, campaign: str | None = None, option: str = "--obd") -> tuple[pd.DataFrame, int, str]:
    """A campaign of logged bandit feedback in ``folder`` (Open Bandit Dataset layout, module docstring):
    the log, the number of items (the rows of ``item_context.csv``, else the largest item id + 1) and the
    campaign's name (None: the folder's only campaign). ``option`` names the folder in messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ObdError(f"{option} {folder} is not a folder")
    campaigns = obd_campaigns(folder)
    if campaign is None:
        if len(campaigns) != 1:
            raise ObdError(f"{option} {folder} holds campaigns {campaigns}: choose one with --campaign")
        campaign = campaigns[0]
    if campaign not in campaigns:
        raise ObdError(f"--campaign {campaign!r} is not in {option} {folder}; found {campaigns}")
    path = folder / f"{campaign}.csv"
    if not path.is_file():
        path = folder / f"{campaign}.parquet"
    log = _read_table(path)
    for column in OBD_COLUMNS:
        if column not in log.columns:
            raise ObdError(f"{path} has no column '{column}' (Open Bandit Dataset layout)")
    if len(log) == 0:
        raise ObdError(f"{path} holds no rounds")
    for column in OBD_COLUMNS:
        values = pd.to_numeric(log[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if column == "position":
            bad |= ~np.isin(values, np.arange(1, OBD_POSITIONS + 1))
        elif column == "propensity_score":
            bad |= ~((values > 0) & (values <= 1))
        elif column == "click":
            bad |= ~np.isin(values, (0, 1))
        else:
            bad |= (values < 0) | (values != np.floor(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            allowed = {"position": "1, 2 or 3", "propensity_score": "in (0, 1]", "click": "0 or 1",
                       "item_id": "an integer >= 0"}[column]
            raise ObdError(f"{path}: column '{column}' must be {allowed}; got {log[column].iloc[row]} at row {row}")
    items_path = folder / "item_context.csv"
    n_items = len(_read_table(items_path)) if items_path.is_file() else int(log["item_id"].max()) + 1
    if int(log["item_id"].max()) >= n_items:
        raise ObdError(f"{path}: item_id {int(log['item_id'].max())} is not in {items_path} ({n_items} items)")
    return log, n_items, campaign


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file, or an ObdError naming it when it is empty, malformed or not text."""
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise ObdError(f"{path} is not a readable Parquet file ({type(exc).__name__})") from None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ObdError(f"{path} is empty (expected a header row and data)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ObdError(f"{path} is not a well-formed CSV file ({type(exc).__name__})") from None


def impressions_of_obd(log: pd.DataFrame, campaign: str) -> pd.DataFrame:
    """A campaign read by :func:`read_obd` in the impression schema: request_id = the round, timestamp in
    days since 1970-01-01 UTC (0 where the campaign has none), user_id -1 (OBD has no user ids), surface =
    the campaign, segment = ``user_feature_0`` where present, position 0-2, item_id, click and the
    propensity as ``position_propensity``."""
    n = len(log)
    if "timestamp" in log.columns:
        days = pd.to_datetime(log["timestamp"], utc=True, errors="coerce")
        timestamp = days.astype("int64").to_numpy() / 86_400e9
        timestamp = np.where(days.isna().to_numpy(), np.nan, timestamp)
    else:
        timestamp = np.zeros(n)
    out = pd.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "timestamp": timestamp,
        "user_id": np.full(n, -1, dtype=np.int64),
        "surface": np.full(n, campaign, dtype=object),
        "position": pd.to_numeric(log["position"]).to_numpy(np.int64) - 1,
        "item_id": pd.to_numeric(log["item_id"]).to_numpy(np.int64),
        "click": pd.to_numeric(log["click"]).to_numpy(np.int64),
        "position_propensity": pd.to_numeric(log["propensity_score"]).to_numpy(np.float64),
    })
    if "user_feature_0" in log.columns:
        out["segment"] = log["user_feature_0"].astype(str).to_numpy()
    return out
