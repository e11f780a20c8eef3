"""Scenario files: the typed, validated description of one simulated shop.

A scenario is a YAML file (the shipped ones live in ``envs/scenarios/``). It is validated on load;
any invalid field fails with :class:`ScenarioError`, one line naming the field, the bad value and what
is allowed, e.g. ``scenario 'x.yaml': world.n_items = -5 is not allowed: must be >= 1``. A file that
cannot be read as a YAML mapping (missing, a directory, not UTF-8, empty, a syntax error, a list at the
top) fails the same way, naming the file and the problem.

Limits that hold for every scenario:

- Every number is finite (YAML's ``.nan``, ``.inf``, ``-.inf`` and values that overflow to infinity, such
  as ``1.0e+400``, are refused) and at most :data:`FLOAT_LIMIT` in magnitude: the simulator computes in
  float32, where larger values overflow to infinity and turn clicks into NaN.
- World sizes have upper bounds, so that a typo (an extra zero or three) fails on load with the memory
  the asked world would take instead of allocating it: ``world.n_items`` <= :data:`MAX_N_ITEMS`,
  ``world.n_users`` <= :data:`MAX_N_USERS`, ``world.latent_dim`` <= :data:`MAX_LATENT_DIM`,
  ``world.n_brands`` and ``world.n_attribute_words`` <= :data:`MAX_VOCABULARY`,
  ``candidates.n_candidates`` <= :data:`MAX_N_CANDIDATES`, and the whole world must take at most
  :data:`MAX_WORLD_GIB` GiB to build (:meth:`WorldParams.build_bytes`).
"""

from __future__ import annotations

import math
import re
import sys
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

SEGMENTS: tuple[str, ...] = ("new", "casual", "loyal", "bargain")
"""Shopper segments, in the order of the context one-hot and of every per-segment table."""

DEVICES: tuple[str, ...] = ("desktop", "mobile", "app")


FLOAT_LIMIT = 1e6
"""Largest magnitude of any number in a scenario (probabilities, weights, logits, days, spreads)."""

MAX_N_ITEMS = 10_000_000
"""Largest catalog (10 x the 1,000,000 items of ``benchmarks/world_scale.py``)."""

MAX_N_USERS = 100_000_000
"""Largest shopper population (10 x the 10,000,000 shoppers of ``benchmarks/world_scale.py``)."""

MAX_LATENT_DIM = 1024
"""Largest dimension of the item and taste vectors."""

MAX_VOCABULARY = 1_000_000
"""Most brands, and most attribute words."""

MAX_N_CANDIDATES = 10_000
"""Most candidates per request (every arm scores each of them, every request)."""

MAX_WORLD_GIB = 64
"""Most memory the world may take to build, as estimated by :meth:`WorldParams.build_bytes`."""


class ScenarioError(ValueError):
    """An invalid scenario: the message is one line naming the field, the value and what is allowed."""


def _within_float_limit(value: float) -> float:
    if abs(value) > FLOAT_LIMIT:
        raise PydanticCustomError("number_too_large", "must be in [-{limit}, {limit}]",
                                  {"limit": f"{FLOAT_LIMIT:g}"})
    return value


Real = Annotated[float, AfterValidator(_within_float_limit)]
"""Every float of a scenario: finite (``allow_inf_nan=False`` in the models' config) and within
[-:data:`FLOAT_LIMIT`, :data:`FLOAT_LIMIT`]; bounds of the field itself (``Field(ge=..., le=...)``) are
checked first."""


class StrictModel(BaseModel):
    """A model of a validated input file: unknown keys, coercion (``"3"`` for 3), NaN and infinity are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SegmentParams(StrictModel):
    """Behaviour of one shopper segment."""

    share: Real = Field(ge=0.0, le=1.0, description="fraction of the population in this segment")
    activity: Real = Field(gt=0.0, description="relative arrival rate of a shopper of this segment")
    search_share: Real = Field(ge=0.0, le=1.0, description="probability that a request is a search")
    price_sensitivity: Real = Field(ge=0.0, description="mean price sensitivity (log-normal spread 0.3)")
    history_purchases: Real = Field(ge=0.0, description="mean number of purchases before the simulation")
    leave_bias: Real = Field(description="logit of leaving after a request with no fatigue")


def _default_segments() -> dict[str, SegmentParams]:
    return {
        "new": SegmentParams(share=0.35, activity=0.6, search_share=0.30, price_sensitivity=1.0,
                             history_purchases=0.0, leave_bias=-2.2),
        "casual": SegmentParams(share=0.35, activity=1.0, search_share=0.35, price_sensitivity=1.0,
                                history_purchases=3.0, leave_bias=-2.6),
        "loyal": SegmentParams(share=0.15, activity=3.0, search_share=0.45, price_sensitivity=0.6,
                               history_purchases=15.0, leave_bias=-3.2),
        "bargain": SegmentParams(share=0.15, activity=1.5, search_share=0.35, price_sensitivity=2.5,
                                 history_purchases=5.0, leave_bias=-2.6),
    }


class WorldParams(StrictModel):
    """Sizes and shape of the catalog and the shopper population."""

    n_items: int = Field(5000, ge=1, description=f"catalog size, at most {MAX_N_ITEMS:,}")
    n_users: int = Field(20000, ge=1, description=f"shopper population size, at most {MAX_N_USERS:,}")
    n_top_categories: int = Field(8, ge=1, description="top level of the category tree")
    n_leaf_per_top: int = Field(5, ge=1, description="leaf categories under each top category")
    n_brands: int = Field(200, ge=1, le=MAX_VOCABULARY)
    n_attribute_words: int = Field(64, ge=1, le=MAX_VOCABULARY,
                                   description="vocabulary of attribute tokens for search")
    latent_dim: int = Field(16, ge=2,
                            description=f"dimension of item and taste latent vectors, at most {MAX_LATENT_DIM}")
    price_sigma: Real = Field(0.5, gt=0.0, description="log-normal spread of prices within a leaf")
    new_item_fraction: Real = Field(0.1, ge=0.0, le=0.5, description="items launched during the run")
    launch_horizon_days: Real = Field(7.0, gt=0.0, description="new items launch uniformly over these days")
    segments: dict[str, SegmentParams] = Field(default_factory=_default_segments)

    @model_validator(mode="after")
    def _check_segments(self) -> "WorldParams":
        names = tuple(self.segments)
        if set(names) != set(SEGMENTS):
            raise ValueError(f"world.segments = {sorted(names)} is not allowed: must name exactly {list(SEGMENTS)}")
        total = sum(s.share for s in self.segments.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"world.segments shares sum to {total:.6g}, not allowed: must sum to 1")
        return self

    @model_validator(mode="after")
    def _check_memory(self) -> "WorldParams":
        size = self.build_bytes()
        for name, limit in (("n_items", MAX_N_ITEMS), ("n_users", MAX_N_USERS), ("latent_dim", MAX_LATENT_DIM)):
            value = getattr(self, name)
            if value > limit:
                raise ValueError(f"world.{name} = {_short_repr(value)} is not allowed: must be <= {limit:,}; a world "
                                 f"of {self._describe()} would take about {_gib_text(size)} GiB to build")
        if size > MAX_WORLD_GIB * 2**30:
            raise ValueError(f"world of {self._describe()} is not allowed: it would take about {_gib_text(size)} GiB "
                             f"to build; must take at most {MAX_WORLD_GIB} GiB (fewer items or shoppers, a smaller "
                             "latent_dim or fewer past purchases)")
        return self

    @property
    def history_per_user(self) -> float:
        """Expected purchases per shopper in the pre-simulation history."""
        return sum(s.share * s.history_purchases for s in self.segments.values())

    def build_bytes(self) -> int:
        """Rough peak memory of ``build_world`` for this world, in bytes: per item 70 + 4 d, per shopper
        100 + 12 d, per past purchase 70 (d = latent_dim). Fitted to peak RSS of worlds of 2e5-1e6 items,
        1e6-3e6 shoppers, d 16-64 and 0-16 past purchases per shopper, within about 20%; for the
        1,000,000 x 10,000,000 world of ``benchmarks/world_scale.py`` it gives 5.5 GiB (measured 5.1)."""
        d = self.latent_dim
        per_user_milli = 1000 * (100 + 12 * d) + round(70_000 * self.history_per_user)  # integers: no overflow
        return self.n_items * (70 + 4 * d) + self.n_users * per_user_milli // 1000

    def _describe(self) -> str:
        return (f"{_count_text(self.n_items)} items x {_count_text(self.n_users)} shoppers with latent_dim "
                f"{_count_text(self.latent_dim)} and {self.history_per_user:.3g} past purchases per shopper")


class BehaviourParams(StrictModel):
    """The shopper response model (see ``envs/response.py`` for the formulas)."""

    click_model: Literal["pbm", "cascade"] = "pbm"
    examination_first: Real = Field(0.9, ge=0.0, le=1.0, description="P(examine slot 1)")
    examination_decay: Real = Field(1.0, ge=0.0, description="theta_k = first / log2(k+1)**decay")
    mobile_extra_decay: Real = Field(0.5, ge=0.0, description="extra decay on mobile (smaller screen)")
    cascade_abandon: Real = Field(0.1, ge=0.0, le=1.0, description="P(stop scanning) after each slot")
    attraction_bias: Real = Field(-4.8, description="logit of attraction for an average item")
    taste_weight: Real = Field(1.4, ge=0.0, description="utility per unit of taste match")
    quality_weight: Real = Field(0.5, ge=0.0)
    intent_weight: Real = Field(1.6, ge=0.0, description="utility of the session's intended category")
    query_weight: Real = Field(2.0, ge=0.0, description="utility per unit of query relevance on search")
    search_offtopic_penalty: Real = Field(1.5, ge=0.0,
                                          description="utility lost on search by items with no query match")
    price_weight: Real = Field(0.8, ge=0.0, description="utility lost per unit of sensitivity x log relative price")
    purchase_bias: Real = Field(-5.5, description="logit of buying a clicked average item")
    purchase_price_weight: Real = Field(1.5, ge=0.0,
                                        description="purchase logit lost per sensitivity x log relative price")
    satiation_weight: Real = Field(1.5, ge=0.0, description="utility lost per unit of category satiation")
    satiation_decay: Real = Field(0.7, ge=0.0, le=1.0, description="satiation kept from one request to the next")
    fatigue_step: Real = Field(0.05, ge=0.0, description="fatigue added by every request")
    fatigue_repeat: Real = Field(0.25, ge=0.0, description="fatigue added per unit of mean satiation of the slate")
    fatigue_weight: Real = Field(2.0, ge=0.0, description="leave logit per unit of fatigue")
    click_engagement: Real = Field(0.8, ge=0.0, description="leave logit removed by a click in the request")
    leave_after_purchase: Real = Field(0.3, ge=0.0, le=1.0, description="P(leave) right after a purchase")
    taste_drift: Real = Field(0.05, ge=0.0, le=1.0, description="step of taste toward a purchased item")


class TrafficParams(StrictModel):
    """How requests arrive."""

    requests_per_day: int = Field(100_000, ge=1, description="simulated requests per simulated day")
    max_session_steps: int = Field(50, ge=1, description="a session is truncated after this many requests")
    device_shares: dict[str, Real] = Field(default_factory=lambda: {"desktop": 0.3, "mobile": 0.5, "app": 0.2})
    query_noise: Real = Field(0.3, ge=0.0, le=1.0, description="P(a query carries a random attribute word)")
    query_leaf_word: Real = Field(0.8, ge=0.0, le=1.0, description="P(a query names its leaf category)")

    @model_validator(mode="after")
    def _check_devices(self) -> "TrafficParams":
        if set(self.device_shares) != set(DEVICES):
            raise ValueError(
                f"traffic.device_shares = {sorted(self.device_shares)} is not allowed: "
                f"must name exactly {list(DEVICES)}")
        if any(v < 0 for v in self.device_shares.values()) or abs(sum(self.device_shares.values()) - 1) > 1e-6:
            raise ValueError(f"traffic.device_shares = {self.device_shares} is not allowed: "
                             "must be probabilities in [0, 1] that sum to 1")
        return self


class CandidateParams(StrictModel):
    """The recall layer that picks the candidates every arm scores."""

    n_candidates: int = Field(200, ge=2, le=MAX_N_CANDIDATES, description="candidates per request")
    slate_size: int = Field(10, ge=1, description="items shown per request")
    context_share: Real = Field(0.4, ge=0.0, le=1.0, description="from the query's or last click's leaf")
    shopper_share: Real = Field(0.25, ge=0.0, le=1.0, description="from a leaf of the shopper's history")
    trending_share: Real = Field(0.2, ge=0.0, le=1.0, description="from the trending list")
    trending_size: int = Field(500, ge=1, description="length of the trending list")
    trending_half_life_days: Real = Field(1.0, gt=0.0)
    refresh_days: Real = Field(0.25, gt=0.0, description="the recall index is rebuilt this often")

    @model_validator(mode="after")
    def _check_shares(self) -> "CandidateParams":
        total = self.context_share + self.shopper_share + self.trending_share
        if total > 1.0:
            raise ValueError(f"candidates shares sum to {total:.6g}, not allowed: context + shopper + trending "
                             "must be <= 1 (the rest are random items)")
        head = round(self.n_candidates * self.context_share) + round(self.n_candidates * self.shopper_share)
        if head < self.slate_size:
            raise ValueError(f"candidates.slate_size = {self.slate_size} is not allowed: the context and shopper "
                             f"blocks hold {head} candidates and must hold at least a slate")
        return self


class Event(StrictModel):
    """A scheduled change of the shop."""

    day: Real = Field(ge=0.0, description="simulated day at which the event happens")
    kind: Literal["trend_shift", "new_items"]
    strength: Real = Field(1.0, ge=0.0, description="trend_shift: utility boost of the trending leaves")
    n_leaves: int = Field(3, ge=1, description="trend_shift: how many leaves become fashionable")
    fraction: Real = Field(0.05, ge=0.0, le=0.5, description="new_items: catalog fraction launched that day")


class Scenario(StrictModel):
    """One simulated shop: world, behaviour, traffic, recall layer, events and the reward."""

    name: str = "custom"
    seed: int = Field(0, ge=0, description="seed of the world (catalog and population)")
    reward: Literal["clicks", "purchases", "revenue"] = "clicks"
    world: WorldParams = Field(default_factory=WorldParams)
    behaviour: BehaviourParams = Field(default_factory=BehaviourParams)
    traffic: TrafficParams = Field(default_factory=TrafficParams)
    candidates: CandidateParams = Field(default_factory=CandidateParams)
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_sizes(self) -> "Scenario":
        w, c = self.world, self.candidates
        n_leaves = w.n_top_categories * w.n_leaf_per_top
        if n_leaves < 2:
            raise ValueError("world.n_top_categories * world.n_leaf_per_top = 1 is not allowed: must be >= 2")
        per_leaf = max(self.context_block, self.shopper_block)
        need = n_leaves * per_leaf
        if self.n_initial_items < need:
            raise ValueError(
                f"world.n_items = {w.n_items} is not allowed: {self.n_initial_items} items are on sale at the start "
                f"(the rest launch later) and every one of the {n_leaves} leaves needs {per_leaf} for its "
                f"candidate block, so at least {need} must be on sale at the start")
        if c.trending_size < self.trending_block or c.trending_size > w.n_items // 2:
            raise ValueError(f"candidates.trending_size = {c.trending_size} is not allowed: must be in "
                             f"[{self.trending_block}, n_items / 2 = {w.n_items // 2}]")
        return self

    @property
    def n_initial_items(self) -> int:
        """Items on sale at day 0 (the others launch during the run or in ``new_items`` events)."""
        late = self.world.new_item_fraction + sum(e.fraction for e in self.events if e.kind == "new_items")
        return int(self.world.n_items * max(0.0, 1.0 - late))

    # Block sizes of the candidate stage, derived once here so every part agrees.
    @property
    def context_block(self) -> int:
        return int(round(self.candidates.n_candidates * self.candidates.context_share))

    @property
    def shopper_block(self) -> int:
        return int(round(self.candidates.n_candidates * self.candidates.shopper_share))

    @property
    def trending_block(self) -> int:
        return int(round(self.candidates.n_candidates * self.candidates.trending_share))

    @property
    def random_block(self) -> int:
        return self.candidates.n_candidates - self.context_block - self.shopper_block - self.trending_block


def _describe_allowed(err: dict) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {f'{bound:,}' if isinstance(bound, int) else bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing"):
        spelled = _yaml_float_spelling(err.get("input"))
        if spelled is not None:
            return f"must be a number (YAML reads {err['input']} as text: write {spelled})"
        return "must be a number"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "number_too_large":
        return err["msg"]
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "missing":
        return "is required"
    return err["msg"]


_YAML_TEXT_FLOAT = re.compile(r"([-+]?)([0-9]+)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)")


def _yaml_float_spelling(value: object) -> str | None:
    """How to write ``value`` so YAML 1.1 (PyYAML) reads a number, for exponent forms it reads as text
    (``1e-3``, ``5E2``: YAML 1.1 needs a dot and a signed exponent); None for anything else."""
    if not isinstance(value, str):
        return None
    match = _YAML_TEXT_FLOAT.fullmatch(value.strip())
    if match is None or not math.isfinite(float(value)):
        return None
    sign, whole, fraction, exp_sign, exponent = match.groups()
    return f"{sign}{whole}.{fraction or 0}e{exp_sign or '+'}{exponent}"


def _gib_text(n_bytes: int) -> str:
    """``n_bytes`` in GiB for a message: 0.011, 5.5, 536, 12,345, or 10^k for absurd sizes (about 10^k)."""
    if n_bytes < 10 * 2**30:
        gib = n_bytes / 2**30
        return f"{gib:.2g}" if gib < 0.1 else f"{gib:.1f}"
    return _count_text(round(n_bytes / 2**30) if n_bytes.bit_length() < 1000 else n_bytes >> 30)


def _count_text(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"10^{int(n.bit_length() * math.log10(2))}"


def _short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, shortened to about ``limit`` characters (a huge number or string stays one short line)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def validation_message(source: str, exc: ValidationError, root: type[BaseModel] | None = None,
                       noun: str = "scenario") -> str:
    """One line for the first error of ``exc``, raised validating a ``noun`` file whose model is ``root`` (None:
    :class:`Scenario`): the field, the bad value and what is allowed, or the unknown key and the allowed ones."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc) if loc else f"<{noun}>"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1], root or Scenario)
        allowed = ", ".join(parent.model_fields) if parent is not None else "see the docs"
        return f"{noun} {source}: unknown key '{_one_line(field, 80)}'; allowed keys here: {allowed}"
    if err["type"] == "value_error":
        return f"{noun} {source}: {str(err['ctx']['error'])}"
    if err["type"] == "missing":
        return f"{noun} {source}: {field} is required"
    value = err.get("input")
    return f"{noun} {source}: {field} = {_short_repr(value)} is not allowed: {_describe_allowed(err)}"


def _model_at(loc: list[str], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (list indices and mapping keys are skipped)."""
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            continue  # a list index or a mapping key such as a segment name
        candidates = (field.annotation, *typing.get_args(field.annotation))
        inner = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not inner:
            return None
        model = inner[0]
    return model


def parse_scenario(raw: object, source: str = "<dict>") -> Scenario:
    """Validate a mapping (as read from YAML) into a :class:`Scenario`, or raise :class:`ScenarioError`."""
    _check_mapping(raw, source)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(validation_message(source, exc)) from None


def _check_mapping(raw: object, source: str, noun: str = "scenario", error: type[ValueError] = ScenarioError) -> None:
    if not isinstance(raw, dict):
        raise error(f"{noun} {source}: top level is {type(raw).__name__}, not allowed: must be a mapping")


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in ``envs/scenarios/``."""
    return shipped_names("fusionsim.envs.scenarios")


def shipped_names(package: str) -> list[str]:
    """Names of the YAML files shipped in ``package`` (without ``.yaml``), sorted."""
    folder = resources.files(package)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path, **overrides: object) -> Scenario:
    """Load a shipped scenario by name (``default``) or a YAML file by path, validated.

    A path is read as UTF-8 YAML whose top level is a mapping; a missing file, a directory, bytes that
    are not UTF-8, an empty file and a YAML syntax error each raise :class:`ScenarioError` naming the file.
    ``overrides`` are dotted field paths, e.g. ``load_scenario("default", **{"world.n_items": 4000})``.
    """
    raw, source = read_yaml_mapping(name_or_path, "fusionsim.envs.scenarios", "scenario", ScenarioError)
    for dotted, value in overrides.items():
        _set_dotted(raw, dotted, value, source)
    return parse_scenario(raw, source)


def read_yaml_mapping(name_or_path: str | Path, package: str, noun: str, error: type[ValueError],
                      example: str = "name: my_shop") -> tuple[dict, str]:
    """The mapping held by the file ``<name>.yaml`` shipped in ``package``, or by a YAML file at a path, and
    the file's label for messages (``'default'``, ``'x.yaml'``). A missing file, a directory, bytes that are
    not UTF-8, an empty file, a YAML syntax error and a top level that is not a mapping each raise ``error``:
    one line starting with ``noun`` and naming the file."""
    text_source = str(name_or_path)
    path = Path(text_source)
    names = shipped_names(package)
    if text_source in names and not path.is_file():
        source = f"'{text_source}'"
        data = resources.files(package).joinpath(f"{text_source}.yaml").read_bytes()
    elif path.suffix in (".yaml", ".yml") or path.exists():
        source, data = f"'{path.name}'", _read_file(path, text_source, noun, error)
    else:
        raise error(f"{noun} '{text_source}' is unknown: use one of {names} or a path to a .yaml file")
    return _parse_yaml(data, source, noun, error, example), source


def _read_file(path: Path, text_source: str, noun: str = "scenario", error: type[ValueError] = ScenarioError) -> bytes:
    if path.is_dir():
        raise error(f"{noun} '{text_source}': is a directory, not a YAML file")
    if not path.exists():
        raise error(f"{noun} '{text_source}': no such file")
    if not path.is_file():
        raise error(f"{noun} '{text_source}': is not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{noun} '{path.name}': cannot be read ({exc.strerror or exc})") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently,
    so a second ``world:`` block would replace the first without a word). A key that overrides one merged in
    with ``<<`` is allowed, as YAML means it to be."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: the base constructor says so
            break
        if duplicate:
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(data: bytes, source: str, noun: str = "scenario", error: type[ValueError] = ScenarioError,
                example: str = "name: my_shop") -> dict:
    """The mapping a ``noun`` file holds, or ``error`` naming the problem in one line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{noun} {source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}); "
                            "save the file as UTF-8") from None
    if not text.strip():
        raise error(f"{noun} {source}: the file is empty; must be a YAML mapping of {noun} fields, "
                    f"e.g. '{example}'")
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader that also refuses duplicate keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise error(f"{noun} {source}: not valid YAML{where}: {_one_line(problem)}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise error(f"{noun} {source}: not valid YAML at line {line}: character "
                            f"#x{ord(character):04x} is not allowed in YAML") from None
    except ValueError as exc:  # PyYAML builds values with int() and date(): too many digits, a 13th month
        problem = (f"an integer has more than {sys.get_int_max_str_digits()} digits" if "digits" in str(exc)
                   else f"a value cannot be built ({_one_line(str(exc))})")
        raise error(f"{noun} {source}: not valid YAML: {problem}") from None
    except RecursionError:  # nesting deeper than the interpreter's stack (where it overflows varies)
        raise error(f"{noun} {source}: not valid YAML: maximum recursion depth exceeded") from None
    except yaml.YAMLError as exc:
        raise error(f"{noun} {source}: not valid YAML: {_one_line(str(exc))}") from None
    if raw is None:
        raise error(f"{noun} {source}: the file holds no settings (only comments or null); must be a "
                    f"YAML mapping of {noun} fields, e.g. '{example}'")
    _check_mapping(raw, source, noun, error)
    return raw


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _set_dotted(raw: dict, dotted: str, value: object, source: str) -> None:
    node = raw
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            parent = ".".join(parts[:depth + 1])
            raise ScenarioError(f"scenario {source}: cannot set {dotted}: {parent} = {_short_repr(node)} is not a "
                                "mapping")
    node[parts[-1]] = value


def scenario_to_dict(scenario: Scenario) -> dict:
    """The resolved scenario as plain data (for ``config.yaml`` of a run)."""
    return scenario.model_dump(mode="json")
