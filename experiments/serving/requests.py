"""The JSON bodies of ``fusionsim serve``: parsed into arrays and checked, each bad value refused with the
field's path (``requests[3].scores.mf[17]``), the value and what is allowed.

``POST /rank`` takes one request object, or ``{"requests": [...]}`` for a batch (at most
:data:`MAX_BATCH`), with an optional ``"slate_size"`` beside the batch or in the single request:

.. code-block:: json

    {"context": {"segment": "loyal", "surface": "search", "device": "app", "hour": 20.5,
                 "session_step": 2, "history_length": 7, "session_clicks": 1, "query_names_leaf": true},
     "candidates": [812, 77, ...],                       // C distinct item ids (C fixed by the policy's shop)
     "scores": {"popularity": [...], "mf": [...], ...},  // every arm's score of each candidate, C numbers each
     "user_id": 1234, "session_id": 99, "query": "running shoes", "excluded": [1, 5]}  // optional

``context``'s fields are those of ``envs.context.CONTEXT_FIELDS`` (``segment``, ``surface``, ``device`` and
``hour`` required, the counts 0 and ``query_names_leaf`` false when left out); ``excluded`` lists the
indices (into ``candidates``) of those that must not be shown. The candidates that may be shown must be
distinct.

``POST /reward`` takes one outcome, or ``{"rewards": [...]}``:

.. code-block:: json

    {"event_id": 4294967296, "clicks": [0, 1, 0, ...], "purchases": [0, 1, 0, ...], "revenue": [0, 39.9, 0, ...]}

with one entry per slot of the slate that ``/rank`` returned (``purchases`` and ``revenue`` optional: none
when left out; a purchase needs a click there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusionsim.envs.context import CONTEXT_FIELDS, contexts_from_fields
from fusionsim.envs.logs import SURFACES
from fusionsim.envs.scenario import DEVICES, SEGMENTS

MAX_BATCH = 1024
"""Most requests (or rewards) in one call."""
COUNT_FIELDS = ("session_step", "history_length", "session_clicks")
REQUIRED_CONTEXT = ("segment", "surface", "device", "hour")
_ALLOWED = dict(CONTEXT_FIELDS)
_NUMBER_TYPES, _INT_TYPE = {int, float}, {int}  # JSON numbers as json.loads gives them (bool is not one)


class RequestError(ValueError):
    """A body that cannot be served: ``field`` is the path of the bad value, the message one line."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _object(value: object, field: str) -> dict:
    if not isinstance(value, dict):
        raise RequestError(field or "body", f"{field or 'the body'} must be a JSON object; got {_shown(value)}")
    return value


def _integer(value: object, field: str, low: int, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value > 2**62:
        raise RequestError(field, f"{field} = {_shown(value)} is not allowed: must be {allowed}")
    return value


def _choice(value: object, field: str, choices: tuple[str, ...]) -> int:
    if value not in choices or not isinstance(value, str):
        raise RequestError(field, f"{field} = {_shown(value)} is not allowed: must be one of {', '.join(choices)}")
    return choices.index(value)


def _items(body: dict, key: str, what: str) -> tuple[list, bool]:
    """The objects of a body that is one object or ``{key: [objects]}`` (1 to MAX_BATCH), and whether it was one."""
    if key not in body:
        return [body], True
    items = body[key]
    if not isinstance(items, list) or not items:
        raise RequestError(key, f"{key} must be a non-empty list of {what} objects; got {_shown(items)}")
    if len(items) > MAX_BATCH:
        raise RequestError(key, f"{key} has {len(items)} entries; at most {MAX_BATCH} are allowed per call")
    return items, False


def _number_list(value: object, field: str, length: int, what: str) -> np.ndarray:
    """``value`` as a (length,) float64 array of finite numbers, or a RequestError naming the first bad entry."""
    if not isinstance(value, list):
        raise RequestError(field, f"{field} must be a list of {length} {what}; got {_shown(value)}")
    if len(value) != length:
        raise RequestError(field, f"{field} has {len(value)} entries; must have {length} (one per "
                                  f"{'candidate' if what.endswith('scores') else 'slot of the slate'})")
    if not set(map(type, value)) <= _NUMBER_TYPES:
        bad = next(i for i, v in enumerate(value) if type(v) not in _NUMBER_TYPES)
        raise RequestError(f"{field}[{bad}]", f"{field}[{bad}] = {_shown(value[bad])} is not allowed: must be a "
                                              "finite number")
    array = np.array(value, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise RequestError(f"{field}[{bad}]", f"{field}[{bad}] = {value[bad]!r} is not allowed: must be a finite "
                                              "number")
    return array


@dataclass
class RankBatch:
    """B parsed requests, arrays in request order: ``contexts`` (B, CONTEXT_DIM) float32, ``candidates`` (B, C)
    int64 item ids, ``excluded`` (B, C) bool, ``arm_scores`` [(B, C) float32] * A in arm order, ``slate_size``,
    and what the decision log keeps of each request: ``user_id`` and ``session_id`` (B,) int64 (-1 where not
    given), ``segment``, ``surface``, ``device`` (B,) indices and ``query`` [str] * B. ``single``: the body
    was one request (the answer is then one result, not a list)."""

    contexts: np.ndarray
    candidates: np.ndarray
    excluded: np.ndarray
    arm_scores: list[np.ndarray]
    slate_size: int
    user_id: np.ndarray
    session_id: np.ndarray
    segment: np.ndarray
    surface: np.ndarray
    device: np.ndarray
    query: list[str]
    single: bool


def parse_rank(body: object, arm_names: list[str], n_candidates: int, default_slate_size: int) -> RankBatch:
    """The requests of a ``/rank`` body (see the module docstring); a :class:`RequestError` for the first
    bad value."""
    body = _object(body, "")
    items, single = _items(body, "requests", "request")
    slate_size = body.get("slate_size", default_slate_size)
    slate_size = _integer(slate_size, "slate_size", 1, f"an integer from 1 to the {n_candidates} candidates")
    if slate_size > n_candidates:
        raise RequestError("slate_size", f"slate_size = {slate_size} is not allowed: must be an integer from 1 to "
                                         f"the {n_candidates} candidates")
    b, n_arms = len(items), len(arm_names)
    fields = {name: np.zeros(b, dtype=np.float64 if name == "hour" else np.int64) for name, _ in CONTEXT_FIELDS}
    candidates = np.empty((b, n_candidates), dtype=np.int64)
    excluded = np.zeros((b, n_candidates), dtype=bool)
    scores = np.empty((n_arms, b, n_candidates), dtype=np.float32)
    user_id = np.full(b, -1, dtype=np.int64)
    session_id = np.full(b, -1, dtype=np.int64)
    query: list[str] = []
    for i, item in enumerate(items):
        prefix = "" if single else f"requests[{i}]"
        item = _object(item, prefix)
        _parse_context(item.get("context"), _join(prefix, "context"), fields, i)
        field = _join(prefix, "candidates")
        ids = item.get("candidates")
        if not isinstance(ids, list) or len(ids) != n_candidates:
            count = f"has {len(ids)} entries" if isinstance(ids, list) else f"= {_shown(ids)}"
            raise RequestError(field, f"{field} {count}; must be a list of {n_candidates} distinct item ids "
                                      "(integers >= 0)")
        if not set(map(type, ids)) <= _INT_TYPE or min(ids) < 0 or max(ids) >= 2**62:
            j = next(j for j, v in enumerate(ids) if type(v) is not int or not 0 <= v < 2**62)
            raise RequestError(f"{field}[{j}]", f"{field}[{j}] = {_shown(ids[j])} is not allowed: must be an item "
                                                "id (an integer >= 0)")
        candidates[i] = ids
        if "excluded" in item:
            excluded[i] = _excluded(item["excluded"], _join(prefix, "excluded"), n_candidates, slate_size)
        order = np.sort(candidates[i][~excluded[i]])
        if (order[1:] == order[:-1]).any():
            repeated = int(order[1:][order[1:] == order[:-1]][0])
            raise RequestError(field, f"{field} lists item {repeated} twice; the candidates that may be shown must "
                                      "be distinct")
        scores[:, i] = _arm_scores(item.get("scores"), _join(prefix, "scores"), arm_names, n_candidates)
        if "user_id" in item:
            user_id[i] = _integer(item["user_id"], _join(prefix, "user_id"), -1,
                                  "an integer >= 0, or -1 for an unknown shopper")
        if "session_id" in item:
            session_id[i] = _integer(item["session_id"], _join(prefix, "session_id"), 0, "an integer >= 0")
        text = item.get("query", "")
        if not isinstance(text, str):
            raise RequestError(_join(prefix, "query"), f"{_join(prefix, 'query')} = {_shown(text)} is not allowed: "
                                                       "must be a string")
        query.append(text)
    contexts = contexts_from_fields(**{("surface_search" if k == "surface" else k): v for k, v in fields.items()})
    return RankBatch(contexts=contexts, candidates=candidates, excluded=excluded, arm_scores=list(scores),
                     slate_size=slate_size, user_id=user_id, session_id=session_id, segment=fields["segment"].copy(),
                     surface=fields["surface"].copy(), device=fields["device"].copy(), query=query, single=single)


def _arm_scores(value: object, field: str, arm_names: list[str], n_candidates: int) -> np.ndarray:
    """A request's ``scores`` object as (A, C) float64 in arm order, or the RequestError of its first bad entry."""
    arm_scores = _object(value, field)
    for name in arm_scores:
        if name not in arm_names:
            raise RequestError(f"{field}.{name}", f"{field}.{name}: '{name}' is not an arm of this policy; its arms "
                                                  f"are {', '.join(arm_names)}")
    lists = [arm_scores.get(name) for name in arm_names]
    if all(type(v) is list and len(v) == n_candidates and set(map(type, v)) <= _NUMBER_TYPES for v in lists):
        block = np.array(lists, dtype=np.float64)  # every arm at once: the common, valid case
        if np.isfinite(block).all():
            return block
    for name in arm_names:  # something is wrong: find the first bad entry, arm by arm
        if name not in arm_scores:
            raise RequestError(f"{field}.{name}", f"{field}.{name} is missing: every arm's scores are required "
                                                  f"({', '.join(arm_names)})")
        _number_list(arm_scores[name], f"{field}.{name}", n_candidates, "scores")
    raise AssertionError("a bad entry was expected")


def _parse_context(context: object, prefix: str, fields: dict[str, np.ndarray], row: int) -> None:
    context = _object(context, prefix)
    for name in REQUIRED_CONTEXT:
        if name not in context:
            raise RequestError(f"{prefix}.{name}", f"{prefix}.{name} is missing: must be {_ALLOWED[name]}")
    for name, value in context.items():
        field = f"{prefix}.{name}"
        if name == "segment":
            fields[name][row] = _choice(value, field, SEGMENTS)
        elif name == "surface":
            fields[name][row] = _choice(value, field, SURFACES)
        elif name == "device":
            fields[name][row] = _choice(value, field, DEVICES)
        elif name == "hour":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and 0 <= value < 24):
                raise RequestError(field, f"{field} = {_shown(value)} is not allowed: must be {_ALLOWED[name]}")
            fields[name][row] = value
        elif name in COUNT_FIELDS:
            fields[name][row] = _integer(value, field, 0, "an integer >= 0")
        elif name == "query_names_leaf":
            if not isinstance(value, bool):
                raise RequestError(field, f"{field} = {_shown(value)} is not allowed: must be true or false")
            fields[name][row] = value
        else:
            raise RequestError(field, f"{field}: unknown context field '{name}'; the fields are "
                                      f"{', '.join(n for n, _ in CONTEXT_FIELDS)}")


def _excluded(value: object, field: str, n_candidates: int, slate_size: int) -> np.ndarray:
    """The (C,) mask of the candidate indices ``value`` lists."""
    if not isinstance(value, list):
        raise RequestError(field, f"{field} must be a list of candidate indices; got {_shown(value)}")
    if not set(map(type, value)) <= _INT_TYPE or (value and (min(value) < 0 or max(value) >= n_candidates)):
        j = next(j for j, v in enumerate(value) if type(v) is not int or not 0 <= v < n_candidates)
        raise RequestError(f"{field}[{j}]", f"{field}[{j}] = {_shown(value[j])} is not allowed: must be an index "
                                            f"into candidates, an integer in [0, {n_candidates})")
    mask = np.zeros(n_candidates, dtype=bool)
    mask[value] = True
    if n_candidates - mask.sum() < slate_size:
        raise RequestError(field, f"{field} leaves {n_candidates - int(mask.sum())} candidates; the slate needs "
                                  f"{slate_size}")
    return mask


@dataclass
class Outcome:
    """One parsed ``/reward``: the ``event_id`` and per-slot ``clicks``, ``purchases`` (k,) int8 and
    ``revenue`` (k,) float64."""

    event_id: int
    clicks: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray


def parse_rewards(body: object, slate_size_of) -> tuple[list[Outcome], bool]:
    """The outcomes of a ``/reward`` body and whether it was a single one. ``slate_size_of(event_id, field)``
    gives the slate length of a waiting event, -1 for one issued but no longer waiting (its outcome is not
    checked further), or raises the RequestError of one never issued."""
    body = _object(body, "")
    items, single = _items(body, "rewards", "reward")
    outcomes = []
    for i, item in enumerate(items):
        prefix = "" if single else f"rewards[{i}]"
        item = _object(item, prefix)
        field = _join(prefix, "event_id")
        if "event_id" not in item:
            raise RequestError(field, f"{field} is missing: must be the event_id that /rank returned")
        event_id = _integer(item["event_id"], field, 0, "an event_id that /rank returned (an integer >= 0)")
        k = slate_size_of(event_id, field)
        if k < 0:  # issued but no longer waiting: the service ignores it and counts it as a duplicate or late
            outcomes.append(Outcome(event_id, *(np.zeros(0, dtype=t) for t in (np.int8, np.int8, np.float64))))
            continue
        clicks = _binary(item.get("clicks"), _join(prefix, "clicks"), k)
        purchases = (_binary(item["purchases"], _join(prefix, "purchases"), k) if "purchases" in item
                     else np.zeros(k, dtype=np.int8))
        bad = np.flatnonzero(purchases > clicks)
        if len(bad):
            field = _join(prefix, f"purchases[{bad[0]}]")
            raise RequestError(field, f"{field} = 1 is not allowed: a purchase needs a click in the same slot")
        revenue = np.zeros(k, dtype=np.float64)
        if "revenue" in item:
            field = _join(prefix, "revenue")
            revenue = _number_list(item["revenue"], field, k, "numbers >= 0")
            if (revenue < 0).any():
                j = int(np.flatnonzero(revenue < 0)[0])
                raise RequestError(f"{field}[{j}]", f"{field}[{j}] = {revenue[j]:g} is not allowed: must be >= 0")
        outcomes.append(Outcome(event_id, clicks, purchases, revenue))
    return outcomes, single


def _binary(value: object, field: str, k: int) -> np.ndarray:
    if value is None:
        raise RequestError(field, f"{field} is missing: must be a list of {k} values 0 or 1, one per slot")
    if not isinstance(value, list) or len(value) != k:
        count = f"has {len(value)} entries" if isinstance(value, list) else f"= {_shown(value)}"
        raise RequestError(field, f"{field} {count}; must be a list of {k} values 0 or 1, one per slot of the slate")
    for j, v in enumerate(value):
        if isinstance(v, bool) or v not in (0, 1) or not isinstance(v, int):
            raise RequestError(f"{field}[{j}]", f"{field}[{j}] = {_shown(v)} is not allowed: must be 0 or 1")
    return np.array(value, dtype=np.int8)
