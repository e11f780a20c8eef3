"""The input schemas of a real shop's data: a catalog and an impression log, validated like scenarios.

Both are read from Parquet or CSV (a file, or a folder of ``*.parquet`` parts). A bad file fails with one
line naming the file, the column, the first bad row (0-based, in file order) and what is allowed.

**Catalog**, one row per item:

| column | required | type | allowed |
|---|---|---|---|
| item_id | yes | integer | >= 0, unique |
| category | yes | string | a category path, levels joined by ``/`` (``shoes/running``), non-empty |
| price | yes | number | finite, > 0 |
| brand | no | string | |
| text | no | string | |
| launch_date | no | number or date | finite (days or a date) |

**Impression log**, one row per shown item:

| column | required | type | allowed |
|---|---|---|---|
| request_id | yes | integer | >= 0; the rows of one request share its per-request columns (+) |
| timestamp | yes | number or date-time | finite: days (a date-time becomes days since 1970-01-01 UTC) |
| user_id | yes | integer | >= 0, or -1 where the shop does not know the shopper |
| session_id | no | integer | >= 0, the shopper's visit (requests of one session share it) |
| surface | yes | string | non-empty (``feed``, ``search``, or the shop's own names) |
| query | no | string | (empty on surfaces without a query) |
| device | no | string | the shopper's device (``mobile`` is the one whose position bias is fitted apart) |
| segment | no | string | the shop's own shopper segment |
| position | yes | integer | >= 0, 0 = the top slot; unique within a request |
| item_id | yes | integer | >= 0 |
| click | yes | integer | 0 or 1 |
| purchase | no | integer | 0 or 1, and 1 only where click is 1 |
| revenue | no | number | finite, >= 0 |
| log_relative_price | no | number | finite: log(price / median price of the item's leaf category) |
| slate_propensity | no | number | in (0, 1]: probability of the whole slate under the logging policy (*) |
| position_propensity | no | number | in (0, 1]: probability of this item at this position (*) |
| action_propensity | no | number | in (0, 1]: probability of the logging policy's action |
| action | no | integer | >= 0, the logging policy's action (e.g. a blend of the weight grid) |
| score_<arm> | no | number | finite: the arm's score of this item in this request |

(+) timestamp, user_id, surface and, where given, session_id, device, segment, action and action_propensity.

(*) For ``ope --rerank`` (a re-ranking of the shown items), the probability of the order given the items
shown, as a randomised-order bucket logs it (1 / k! for the slate, 1 / k for an item at a position).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class SchemaError(ValueError):
    """A catalog or impression file that does not fit its schema; the message is one line."""


@dataclass(frozen=True)
class Column:
    """One column of a schema: its ``name``, whether it is ``required``, its ``kind`` ("integer", "number",
    "time", "string") and the bounds its values must keep (``low``/``high``, open where ``*_open``)."""

    name: str
    required: bool
    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    allowed: str = ""

    def describe(self) -> str:
        """What a value must be, for messages."""
        if self.allowed:
            return self.allowed
        if self.kind == "string":
            return "a non-empty string"
        if self.kind == "time":
            return "a finite number or a date-time"
        word = "an integer" if self.kind == "integer" else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{word} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{word} {'>' if self.low_open else '>='} {self.low:g}"
        return word


_UNIT = dict(kind="number", low=0.0, high=1.0, low_open=True)
CATALOG_COLUMNS = (
    Column("item_id", True, "integer", 0.0),
    Column("category", True, "string", allowed="a non-empty category path (levels joined by '/')"),
    Column("price", True, "number", 0.0, low_open=True),
    Column("brand", False, "string"),
    Column("text", False, "string"),
    Column("launch_date", False, "time"),
)
IMPRESSION_COLUMNS = (
    Column("request_id", True, "integer", 0.0),
    Column("timestamp", True, "time"),
    Column("user_id", True, "integer", -1.0, allowed="an integer >= 0, or -1 for an unknown shopper"),
    Column("session_id", False, "integer", 0.0),
    Column("surface", True, "string"),
    Column("query", False, "string"),
    Column("device", False, "string"),
    Column("segment", False, "string"),
    Column("position", True, "integer", 0.0, allowed="an integer >= 0 (0 = the top slot)"),
    Column("item_id", True, "integer", 0.0),
    Column("click", True, "integer", 0.0, 1.0, allowed="0 or 1"),
    Column("purchase", False, "integer", 0.0, 1.0, allowed="0 or 1"),
    Column("revenue", False, "number", 0.0),
    Column("log_relative_price", False, "number"),
    Column("slate_propensity", False, **_UNIT),
    Column("position_propensity", False, **_UNIT),
    Column("action_propensity", False, **_UNIT),
    Column("action", False, "integer", 0.0),
)
SCORE_PREFIX = "score_"
"""Impression columns ``score_<arm>``: an arm's score of the shown item (finite numbers)."""


def read_table(path: str | Path, what: str) -> tuple[pd.DataFrame, str]:
    """The table in ``path`` (a ``.parquet`` or ``.csv`` file, or a folder of ``*.parquet`` parts) and its
    name for messages; a :class:`SchemaError` naming ``what`` (e.g. "--catalog") for a missing, empty or
    unreadable one."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise SchemaError(f"{what} {source} is a folder without *.parquet files")
        try:
            table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{what} {source}: a Parquet part is corrupt or the parts disagree "
                              f"({type(exc).__name__})") from None
        frame = table.to_pandas()
    elif not path.is_file():
        raise SchemaError(f"{what} {source} does not exist")
    elif path.suffix.lower() == ".parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{what} {source} is not a readable Parquet file ({type(exc).__name__})") from None
    elif path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise SchemaError(f"{what} {source} is empty (expected a header row and data)") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise SchemaError(f"{what} {source} is not a well-formed UTF-8 CSV file ({type(exc).__name__})") from None
    else:
        raise SchemaError(f"{what} {source}: expected a .parquet or .csv file, or a folder of .parquet parts")
    if len(frame) == 0:
        raise SchemaError(f"{what} {source} holds no rows")
    return frame, source


def validate(frame: pd.DataFrame, columns: tuple[Column, ...], source: str,
             extra_numbers: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` with every schema column present checked and converted (integers to int64, numbers and
    times to float64 — a date-time to days since 1970-01-01 —, strings to str with missing as ""), plus
    the numeric columns ``extra_numbers``; other columns are dropped. A :class:`SchemaError` names
    ``source``, the column, the first bad row and what is allowed."""
    missing = [c.name for c in columns if c.required and c.name not in frame.columns]
    if missing:
        required = ", ".join(c.name for c in columns if c.required)
        raise SchemaError(f"{source} has no column '{missing[0]}' (required: {required})")
    out = {}
    for column in columns:
        if column.name in frame.columns:
            out[column.name] = _checked(frame[column.name], column, source)
    for name in extra_numbers:
        out[name] = _checked(frame[name], Column(name, False, "number"), source)
    return pd.DataFrame(out)


def _checked(values: pd.Series, column: Column, source: str) -> pd.Series:
    def fail(row: int) -> SchemaError:
        return SchemaError(f"{source}: column '{column.name}' must be {column.describe()}; got "
                           f"{_shown(values.iloc[row])} at row {row}")

    if column.kind == "string":
        missing = values.isna().to_numpy()
        text = values.astype(str).where(~missing, "")
        if column.required:
            bad = (text.str.strip() == "").to_numpy()
            if bad.any():
                raise fail(int(np.flatnonzero(bad)[0]))
        return text
    if column.kind == "time" and pd.api.types.is_datetime64_any_dtype(values):
        numbers = _days(values)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        if column.kind == "time":  # a CSV holds date-times as text: ISO 8601, UTC unless it says otherwise
            text = ~np.isfinite(numbers) & values.notna().to_numpy()
            if text.any():
                parsed = pd.to_datetime(values[text].astype(str), utc=True, errors="coerce", format="ISO8601")
                numbers[text] = _days(parsed)
    bad = ~np.isfinite(numbers)
    if column.kind == "integer":
        bad |= numbers != np.floor(np.nan_to_num(numbers))
    if column.low is not None:
        bad |= (numbers <= column.low) if column.low_open else (numbers < column.low)
    if column.high is not None:
        bad |= numbers > column.high
    if bad.any():
        raise fail(int(np.flatnonzero(bad)[0]))
    return pd.Series(numbers.astype(np.int64) if column.kind == "integer" else numbers, index=values.index)


def _days(times: pd.Series) -> np.ndarray:
    """Date-times (any resolution, naive meaning UTC) as float64 days since 1970-01-01 UTC; NaN where missing."""
    naive = (times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz is not None else times)
    numbers = naive.astype("datetime64[ns]").astype("int64").to_numpy() / 86_400e9
    return np.where(times.isna().to_numpy(), np.nan, numbers)


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_catalog(path: str | Path, what: str = "--catalog") -> pd.DataFrame:
    """The validated catalog in ``path`` (see the module docstring): unique item ids."""
    frame, source = read_table(path, what)
    catalog = validate(frame, CATALOG_COLUMNS, source)
    duplicated = catalog["item_id"].duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise SchemaError(f"{source}: column 'item_id' must be unique; item {catalog['item_id'].iloc[row]} appears "
                          f"again at row {row}")
    return catalog


PER_REQUEST = ("timestamp", "user_id", "surface", "session_id", "device", "segment", "action", "action_propensity")
"""The impression-log columns that hold one value per request (the same on every row of it), where given."""


def read_impression_log(path: str | Path, what: str = "--logs") -> pd.DataFrame:
    """The validated impression log in ``path`` (see the module docstring), with its ``score_<arm>``
    columns: a purchase only where there was a click, one item per position of a request, one value per request
    of each :data:`PER_REQUEST` column."""
    frame, source = read_table(path, what)
    scores = tuple(c for c in frame.columns if str(c).startswith(SCORE_PREFIX))
    log = validate(frame, IMPRESSION_COLUMNS, source, scores)
    if "purchase" in log:
        bad = ((log["purchase"] == 1) & (log["click"] == 0)).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{source}: column 'purchase' must be 0 where click is 0 (a purchase follows a click); "
                              f"got 1 at row {row}")
    duplicated = log.duplicated(["request_id", "position"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        request, position = log["request_id"].iloc[row], log["position"].iloc[row]
        raise SchemaError(f"{source}: column 'position' must be unique within a request; request {request} shows "
                          f"position {position} again at row {row}")
    for name in (name for name in PER_REQUEST if name in log.columns):
        differs = (log.groupby("request_id")[name].transform("first") != log[name]).to_numpy()
        if differs.any():
            row = int(np.flatnonzero(differs)[0])
            raise SchemaError(f"{source}: column '{name}' must be the same on every row of a request; request "
                              f"{log['request_id'].iloc[row]} has {_shown(log[name].iloc[row])} at row {row}")
    return log
