"""Scenario files: the typed, validated description of one simulated shop.

A scenario is a YAML file (the shipped ones live in ``envs/scenarios/``). It is validated on load;
any invalid field fails with :class:`ScenarioError`, one line naming the field, the bad value and what
is allowed, e.g. ``scenario 'x.yaml': world.n_items = -5 is not allowed: must be >= 1``.
"""

from __future__ import annotations

import typing
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SEGMENTS: tuple[str, ...] = ("new", "casual", "loyal", "bargain")
"""Shopper segments, in the order of the context one-hot and of every per-segment table."""

DEVICES: tuple[str, ...] = ("desktop", "mobile", "app")


class ScenarioError(ValueError):
    """An invalid scenario: the message is one line naming the field, the value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SegmentParams(_Strict):
    """Behaviour of one shopper segment."""

    share: float = Field(ge=0.0, le=1.0, description="fraction of the population in this segment")
    activity: float = Field(gt=0.0, description="relative arrival rate of a shopper of this segment")
    search_share: float = Field(ge=0.0, le=1.0, description="probability that a request is a search")
    price_sensitivity: float = Field(ge=0.0, description="mean price sensitivity (log-normal spread 0.3)")
    history_purchases: float = Field(ge=0.0, description="mean number of purchases before the simulation")
    leave_bias: float = Field(description="logit of leaving after a request with no fatigue")


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


class WorldParams(_Strict):
    """Sizes and shape of the catalog and the shopper population."""

    n_items: int = Field(5000, ge=1, description="catalog size")
    n_users: int = Field(20000, ge=1, description="shopper population size")
    n_top_categories: int = Field(8, ge=1, description="top level of the category tree")
    n_leaf_per_top: int = Field(5, ge=1, description="leaf categories under each top category")
    n_brands: int = Field(200, ge=1)
    n_attribute_words: int = Field(64, ge=1, description="vocabulary of attribute tokens for search")
    latent_dim: int = Field(16, ge=2, description="dimension of item and taste latent vectors")
    price_sigma: float = Field(0.5, gt=0.0, description="log-normal spread of prices within a leaf")
    new_item_fraction: float = Field(0.1, ge=0.0, le=0.5, description="items launched during the run")
    launch_horizon_days: float = Field(7.0, gt=0.0, description="new items launch uniformly over these days")
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


class BehaviourParams(_Strict):
    """The shopper response model (see ``envs/response.py`` for the formulas)."""

    click_model: Literal["pbm", "cascade"] = "pbm"
    examination_first: float = Field(0.9, ge=0.0, le=1.0, description="P(examine slot 1)")
    examination_decay: float = Field(1.0, ge=0.0, description="theta_k = first / log2(k+1)**decay")
    mobile_extra_decay: float = Field(0.5, ge=0.0, description="extra decay on mobile (smaller screen)")
    cascade_abandon: float = Field(0.1, ge=0.0, le=1.0, description="P(stop scanning) after each slot")
    attraction_bias: float = Field(-4.8, description="logit of attraction for an average item")
    taste_weight: float = Field(1.4, ge=0.0, description="utility per unit of taste match")
    quality_weight: float = Field(0.5, ge=0.0)
    intent_weight: float = Field(1.6, ge=0.0, description="utility of the session's intended category")
    query_weight: float = Field(2.0, ge=0.0, description="utility per unit of query relevance on search")
    search_offtopic_penalty: float = Field(1.5, ge=0.0,
                                           description="utility lost on search by items with no query match")
    price_weight: float = Field(0.8, ge=0.0, description="utility lost per unit of sensitivity x log relative price")
    purchase_bias: float = Field(-5.5, description="logit of buying a clicked average item")
    purchase_price_weight: float = Field(1.5, ge=0.0,
                                         description="purchase logit lost per sensitivity x log relative price")
    satiation_weight: float = Field(1.5, ge=0.0, description="utility lost per unit of category satiation")
    satiation_decay: float = Field(0.7, ge=0.0, le=1.0, description="satiation kept from one request to the next")
    fatigue_step: float = Field(0.05, ge=0.0, description="fatigue added by every request")
    fatigue_repeat: float = Field(0.25, ge=0.0, description="fatigue added per unit of mean satiation of the slate")
    fatigue_weight: float = Field(2.0, ge=0.0, description="leave logit per unit of fatigue")
    click_engagement: float = Field(0.8, ge=0.0, description="leave logit removed by a click in the request")
    leave_after_purchase: float = Field(0.3, ge=0.0, le=1.0, description="P(leave) right after a purchase")
    taste_drift: float = Field(0.05, ge=0.0, le=1.0, description="step of taste toward a purchased item")


class TrafficParams(_Strict):
    """How requests arrive."""

    requests_per_day: int = Field(100_000, ge=1, description="simulated requests per simulated day")
    max_session_steps: int = Field(50, ge=1, description="a session is truncated after this many requests")
    device_shares: dict[str, float] = Field(default_factory=lambda: {"desktop": 0.3, "mobile": 0.5, "app": 0.2})
    query_noise: float = Field(0.3, ge=0.0, le=1.0, description="P(a query carries a random attribute word)")
    query_leaf_word: float = Field(0.8, ge=0.0, le=1.0, description="P(a query names its leaf category)")

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


class CandidateParams(_Strict):
    """The recall layer that picks the candidates every arm scores."""

    n_candidates: int = Field(200, ge=2, description="candidates per request")
    slate_size: int = Field(10, ge=1, description="items shown per request")
    context_share: float = Field(0.4, ge=0.0, le=1.0, description="from the query's or last click's leaf")
    shopper_share: float = Field(0.25, ge=0.0, le=1.0, description="from a leaf of the shopper's history")
    trending_share: float = Field(0.2, ge=0.0, le=1.0, description="from the trending list")
    trending_size: int = Field(500, ge=1, description="length of the trending list")
    trending_half_life_days: float = Field(1.0, gt=0.0)
    refresh_days: float = Field(0.25, gt=0.0, description="the recall index is rebuilt this often")

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


class Event(_Strict):
    """A scheduled change of the shop."""

    day: float = Field(ge=0.0, description="simulated day at which the event happens")
    kind: Literal["trend_shift", "new_items"]
    strength: float = Field(1.0, ge=0.0, description="trend_shift: utility boost of the trending leaves")
    n_leaves: int = Field(3, ge=1, description="trend_shift: how many leaves become fashionable")
    fraction: float = Field(0.05, ge=0.0, le=0.5, description="new_items: catalog fraction launched that day")


class Scenario(_Strict):
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
        return f"must be {bounds[kind]} {next(iter(ctx.values()))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "missing":
        return "is required"
    return err["msg"]


def _format_error(source: str, exc: ValidationError, raw: dict) -> str:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc) if loc else "<scenario>"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "see the docs"
        return f"scenario {source}: unknown key '{field}'; allowed keys here: {allowed}"
    if err["type"] == "value_error":
        return f"scenario {source}: {str(err['ctx']['error'])}"
    if err["type"] == "missing":
        return f"scenario {source}: {field} is required"
    value = err.get("input")
    return f"scenario {source}: {field} = {value!r} is not allowed: {_describe_allowed(err)}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (list indices and mapping keys are skipped)."""
    model: type[BaseModel] = Scenario
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
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {source}: top level is {type(raw).__name__}, not allowed: must be a mapping")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_error(source, exc, raw)) from None


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in ``envs/scenarios/``."""
    folder = resources.files("fusionsim.envs.scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path, **overrides: object) -> Scenario:
    """Load a shipped scenario by name (``default``) or a YAML file by path, validated.

    ``overrides`` are dotted field paths, e.g. ``load_scenario("default", **{"world.n_items": 4000})``.
    """
    text_source = str(name_or_path)
    path = Path(text_source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario '{text_source}': no such file")
        source, text = f"'{path.name}'", path.read_text()
    else:
        if text_source not in scenario_names():
            raise ScenarioError(f"scenario '{text_source}' is unknown: use one of {scenario_names()} or a path "
                                "to a .yaml file")
        source = f"'{text_source}'"
        text = resources.files("fusionsim.envs.scenarios").joinpath(f"{text_source}.yaml").read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"scenario {source}: not valid YAML{where}") from None
    raw = {} if raw is None else raw
    for dotted, value in overrides.items():
        _set_dotted(raw, dotted, value)
    return parse_scenario(raw, source)


def _set_dotted(raw: dict, dotted: str, value: object) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def scenario_to_dict(scenario: Scenario) -> dict:
    """The resolved scenario as plain data (for ``config.yaml`` of a run)."""
    return scenario.model_dump(mode="json")
