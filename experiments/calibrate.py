"""``fusionsim calibrate``: fit a scenario's shopper model to a log, and check the fit on held-out requests.

The log is a complete ``fusionsim simulate`` run (a shop's own impression log needs its catalog as the
world, which is not built yet). Its earliest ``1 - holdout`` share of requests is fitted, the rest held
out. Fitted, on top of the starting ``--scenario``:

- the arrival mix, in closed form (``envs.calibration.arrival``): ``traffic.device_shares`` (the share of
  sessions from each device) and each segment's ``search_share`` (the share of its requests that are
  searches), where the log names its devices, segments and surfaces as the scenario does;
- ``behaviour.examination_decay`` from the position bias (``envs.calibration.position_bias``) of the
  impressions not on mobile: the CTR ratios where the log's slates were shuffled, else the position-based
  model fitted by EM; ``behaviour.mobile_extra_decay`` as the mobile impressions' decay minus that (not
  below 0);
- ``behaviour.attraction_bias`` so that the simulated click rate at the top position equals the log's;
- ``behaviour.purchase_bias`` so that the simulated purchases per click equal the log's;
- where the log has sessions, one shift of every segment's ``leave_bias`` so that the simulated requests per
  session (over the sessions the window saw) equal the log's.

The last three are fitted by simulation (the method of simulated moments): the log's policy is simulated on
the candidate scenario for as many requests as were fitted (in as many slots, so with the same mix of early
and late session steps), always on the same seed (common random
numbers, so the simulated moments move smoothly with the parameters), and they are solved together by
Newton steps on a finite-difference Jacobian (one simulation gives every moment), until each is within
one standard error of the log's own estimate (the simulation is as noisy). Examination at the top
(``behaviour.examination_first``) is not identified apart from attraction by clicks alone and stays as the
starting scenario has it.

Writes ``scenario.yaml`` (the fitted scenario, loadable by every command), ``fitted.json`` (each
parameter, the moment it matched, log and simulated), ``fidelity.md`` / ``fidelity.json`` /
``ctr_by_position.png`` (the fitted shop against the held-out requests, as ``fusionsim fidelity``: the log's
policy simulated again as long as the log, and the same window of requests compared; and the held-out
log-likelihood per impression of the position-based model fitted by EM against the per-position click
rate), ``simulated/`` (that
simulation), ``config.yaml`` and ``complete.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.calibration.arrival import arrival_mix
from fusionsim.envs.calibration.position_bias import log_likelihood, pbm_em, randomized_position_bias
from fusionsim.envs.calibration.readers import impressions_of_log
from fusionsim.envs.calibration.statistics import compare_statistics, log_statistics
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.world import build_world
from fusionsim.envs.scenario import SEGMENTS, Scenario, parse_scenario, scenario_to_dict
from fusionsim.experiments.fidelity import plot_positions, render_report, verdict
from fusionsim.experiments.runs import write_config, write_json
from fusionsim.experiments.simulate import SimulateConfig, build_simulation, read_simulate_run, run_policy

FITTED = ("examination_decay", "mobile_extra_decay", "attraction_bias", "purchase_bias")
"""The ``behaviour`` parameters ``calibrate`` fits."""
SEARCH_RANGE = (-12.0, 4.0)
"""Where the solver looks for a bias (logits)."""


EM_WARNING = ("position bias from a log in the policy's order: the position-based model fitted by EM takes the "
              "ranker's per-request relevance for position bias (see README: the decay comes out too steep); log a "
              "randomised bucket (simulate --shuffle-slates) for an unbiased estimate")


class CalibrateError(ValueError):
    """Bad ``calibrate`` input; the message is one line naming the option."""


@dataclass(frozen=True)
class CalibrateConfig:
    """What one ``fusionsim calibrate`` run does; written whole as ``config.yaml``'s ``args``."""

    logs: str
    """a complete fusionsim simulate run folder: the log to fit"""
    scenario: str = "default"
    """the starting scenario (name or YAML path): everything not fitted is taken from it"""
    holdout: float = 0.2
    """share of the latest requests held out for the fidelity check"""
    tolerance: float = 0.01
    """precision (logits) to which each bias is solved"""
    seed: int = 7
    """seed of the simulations"""

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise CalibrateError(f"--holdout must be in (0, 1); got {self.holdout!r}")
        if not 1e-4 <= self.tolerance <= 1.0:
            raise CalibrateError(f"--tolerance must be in [0.0001, 1]; got {self.tolerance!r}")


def _with_behaviour(scenario: Scenario, **values: float) -> Scenario:
    raw = scenario_to_dict(scenario)
    raw["behaviour"] = {**raw["behaviour"], **values}
    return parse_scenario(raw, "<calibrated>")


def _with_leave_shift(scenario: Scenario, start: Scenario, shift: float) -> Scenario:
    """``scenario`` with every segment's ``leave_bias`` the ``start``'s plus ``shift`` (logits)."""
    raw = scenario_to_dict(scenario)
    for segment, params in raw["world"]["segments"].items():
        params["leave_bias"] = start.world.segments[segment].leave_bias + shift
    return parse_scenario(raw, "<calibrated>")


def _with_arrival_mix(scenario: Scenario, device_shares: dict[str, float] | None,
                      search_shares: dict[str, float]) -> Scenario:
    raw = scenario_to_dict(scenario)
    if device_shares is not None:
        raw["traffic"]["device_shares"] = device_shares
    for segment, share in search_shares.items():
        raw["world"]["segments"][segment]["search_share"] = share
    return parse_scenario(raw, "<calibrated>")


def simulated_moments(scenario: Scenario, config: SimulateConfig) -> tuple[float, float, float]:
    """Click rate at the top position, purchases per click and requests per session (over the sessions
    seen) of ``config``'s policy simulated on ``scenario`` for ``config.requests`` requests."""
    simulation = build_simulation(config, scenario)
    top_clicks, clicks, purchases, done, sessions = 0, 0, 0, 0, []
    while done < config.requests:
        result = simulation.sim.serve(simulation.policy, simulation.mapper)
        keep = min(len(result.reward), config.requests - done)
        top_clicks += int(result.clicks[:keep, 0].sum())
        clicks += int(result.clicks[:keep].sum())
        purchases += int(result.purchased[:keep].sum())
        sessions.append(result.session_id[:keep])
        done += keep
    return top_clicks / done, purchases / max(clicks, 1), done / len(np.unique(np.concatenate(sessions)))


def held_out_click_models(fit_part, held_out) -> dict:
    """Mean log-likelihood per held-out impression of the position-based model fitted by EM on ``fit_part``
    (items it never saw get its mean attraction) and of the naive per-position click rate of ``fit_part``."""
    positions = fit_part["position"].to_numpy()
    _, model = pbm_em(fit_part["item_id"].to_numpy(), positions, fit_part["click"].to_numpy())
    rate = np.bincount(positions, weights=fit_part["click"].to_numpy(np.float64)) / np.bincount(positions)
    test_positions, clicks = held_out["position"].to_numpy(), held_out["click"].to_numpy()
    known = test_positions < len(rate)
    return {"pbm": log_likelihood(model.click_probability(held_out["item_id"].to_numpy()[known],
                                                          test_positions[known]), clicks[known]),
            "per_position_ctr": log_likelihood(rate[test_positions[known]], clicks[known]),
            "impressions": int(known.sum())}


def _position_bias(impressions, shuffled: bool):
    """The position bias of ``impressions``: CTR ratios where the slates were shuffled, else PBM by EM."""
    positions, clicks = impressions["position"].to_numpy(), impressions["click"].to_numpy()
    if shuffled:
        return randomized_position_bias(impressions["request_id"].to_numpy(), positions, clicks)
    return pbm_em(impressions["item_id"].to_numpy(), positions, clicks)[0]


def solve_moments(moments, targets: np.ndarray, start: np.ndarray, tolerance: float,
                  precision: np.ndarray | None = None, step: float = 0.3, refresh: int = 4,
                  max_iterations: int = 30) -> tuple[np.ndarray, np.ndarray, int]:
    """The parameters x (m,) where ``moments(x)`` (m,) meets ``targets`` (m,): Newton steps with a
    finite-difference Jacobian (one evaluation per parameter, ``step`` apart: wide enough that simulation
    noise does not swamp the slope), recomputed every ``refresh`` steps; each step at most 2 per parameter,
    within :data:`SEARCH_RANGE`. Stops when every parameter moves by less than ``tolerance``, or when every
    moment is within ``precision`` (m,) of its target (the log's own standard error: closer is noise). One
    evaluation gives every moment. Returns the parameters, their moments and the number of evaluations."""
    lowest, highest = SEARCH_RANGE
    x = np.asarray(start, dtype=np.float64).copy()
    f = np.asarray(moments(x)) - targets
    evaluations = 1

    def jacobian_at(x: np.ndarray, f: np.ndarray) -> np.ndarray:
        columns = []
        for j in range(len(x)):
            shifted = x.copy()
            shifted[j] += step
            columns.append((np.asarray(moments(shifted)) - targets - f) / step)
        return np.stack(columns, axis=1)

    for iteration in range(max_iterations):
        if precision is not None and np.all(np.abs(f) <= precision):
            return x, f + targets, evaluations
        if iteration % refresh == 0:
            jacobian = jacobian_at(x, f)
            evaluations += len(x)
        try:
            move = -np.linalg.solve(jacobian, f)
        except np.linalg.LinAlgError:
            raise CalibrateError("the simulated moments do not move with the parameters: they cannot be "
                                 "fitted") from None
        new_x = np.clip(x + np.clip(move, -2.0, 2.0), lowest, highest)
        moved = np.abs(new_x - x).max()
        x, f = new_x, np.asarray(moments(new_x)) - targets
        evaluations += 1
        if moved < tolerance:
            return x, f + targets, evaluations
    raise CalibrateError(f"the moments did not converge in {max_iterations} steps (last parameters {x.tolist()})")


def calibrate(config: CalibrateConfig, start: Scenario, out: Path, progress: bool = True) -> dict:
    """Fit :data:`FITTED` to the log on top of ``start``; write the outputs of the module docstring."""
    logs = Path(config.logs)
    simulate_config, arm_names = read_simulate_run(logs)
    write_config(out, "calibrate", dataclasses.asdict(config), scenario=scenario_to_dict(start))
    relative_prices = build_world(start).catalog.log_relative_price  # the log's items are the start's world's
    impressions = impressions_of_log(read_interaction_log(logs, "--logs"), arm_names,
                                     log_relative_prices=relative_prices)
    requests = np.unique(impressions["request_id"].to_numpy())
    n_fit = int(round((1.0 - config.holdout) * len(requests)))
    if n_fit < 1 or n_fit == len(requests):
        raise CalibrateError(f"--logs {logs} has {len(requests)} requests: too few to fit and hold out "
                             f"{config.holdout:.0%}")
    fit_part = impressions[impressions["request_id"].isin(requests[:n_fit])]
    held_out = impressions[~impressions["request_id"].isin(requests[:n_fit])]
    mix = arrival_mix(fit_part)
    device_shares = None if mix.device_shares is None else {d: e.value for d, e in mix.device_shares.items()}
    search_shares = {segment: e.value for segment, e in mix.search_shares.items()}
    start_mix = {"device_shares": dict(start.traffic.device_shares),
                 "search_share": {segment: start.world.segments[segment].search_share for segment in search_shares}}
    mixed = _with_arrival_mix(start, device_shares, search_shares)  # the start, arriving as the log does
    mobile = (fit_part["device"] == "mobile").to_numpy()
    bias = _position_bias(fit_part[~mobile], simulate_config.shuffle_slates)
    fitted = {"examination_decay": bias.decay(),
              "mobile_extra_decay": max(0.0, _position_bias(fit_part[mobile], simulate_config.shuffle_slates).decay()
                                        - bias.decay())}
    target = log_statistics(fit_part)
    matched = ["CTR at position 1", "purchases per click"]
    if "requests per session" in target:  # with sessions, how long they last fits the leaving too
        matched.append("requests per session")
    targets = np.array([target[name].value for name in matched])
    precision = np.array([target[name].se for name in matched])
    # as many requests as were fitted, in as many slots: the same mix of early and late session steps
    moment_config = dataclasses.replace(simulate_config, requests=n_fit, seed=config.seed)
    scenario = _with_behaviour(mixed, examination_decay=fitted["examination_decay"],
                               mobile_extra_decay=fitted["mobile_extra_decay"])

    def candidate(x: np.ndarray) -> Scenario:
        fitted_scenario = _with_behaviour(scenario, attraction_bias=float(x[0]), purchase_bias=float(x[1]))
        return _with_leave_shift(fitted_scenario, mixed, float(x[2])) if len(x) > 2 else fitted_scenario

    def moments(x: np.ndarray) -> tuple[float, ...]:
        return simulated_moments(candidate(x), moment_config)[:len(matched)]

    start_x = [scenario.behaviour.attraction_bias, scenario.behaviour.purchase_bias, 0.0][:len(matched)]
    solution, final, evaluations = solve_moments(moments, targets, np.array(start_x), config.tolerance, precision)
    fitted["attraction_bias"], fitted["purchase_bias"] = float(solution[0]), float(solution[1])
    leave_shift = float(solution[2]) if len(matched) > 2 else None
    scenario = candidate(solution)
    result = {"fitted": fitted, "start": {name: getattr(start.behaviour, name) for name in FITTED},
              "matched": {name: {"log": float(targets[i]), "simulated": float(final[i])}
                          for i, name in enumerate(matched)},
              "leave_bias_shift": leave_shift,
              "leave_bias": {segment: scenario.world.segments[segment].leave_bias for segment in SEGMENTS},
              "simulations": evaluations,
              "position_bias": {"relative": bias.relative.tolist(), "low": bias.low.tolist(),
                                "high": bias.high.tolist(), "method": "randomised" if simulate_config.shuffle_slates
                                else "pbm-em", "warning": None if simulate_config.shuffle_slates else EM_WARNING},
              "arrival_mix": {"device_shares": None if mix.device_shares is None else
                              {d: {"value": e.value, "se": e.se} for d, e in mix.device_shares.items()},
                              "search_share": {segment: {"value": e.value, "se": e.se}
                                               for segment, e in mix.search_shares.items()},
                              "start": start_mix, "not_fitted": mix.not_fitted},
              "fit_requests": n_fit, "held_out_requests": len(requests) - n_fit}
    atomic_write_text(out / "scenario.yaml", f"# fitted by fusionsim calibrate to {logs} on top of scenario "
                      f"'{start.name}': behaviour " + ", ".join(f"{k} {v:.4f}" for k, v in fitted.items())
                      + "; arrival mix: " + ("device shares, " if device_shares is not None else "")
                      + f"search share of {', '.join(search_shares) or 'no segment'}\n"
                      + yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False))
    # fidelity: the fitted shop against the held-out requests. The log is simulated again whole, on another
    # seed, and the same window of requests is compared, so both windows hold sessions begun before them
    run_policy(dataclasses.replace(simulate_config, seed=config.seed + 1), scenario, out / "simulated",
               progress=progress)
    simulated = impressions_of_log(read_interaction_log(out / "simulated", "--logs"), arm_names,
                                   log_relative_prices=relative_prices)
    simulated = simulated[simulated["request_id"] >= requests[n_fit]]
    rows = compare_statistics(log_statistics(held_out), log_statistics(simulated))
    result["fidelity"] = {"statistics": [r.to_dict() for r in rows], "verdict": verdict(rows),
                          "differing": [r.statistic for r in rows if r.verdict == "differs"]}
    result["click_model"] = held_out_click_models(fit_part, held_out)
    write_json(out / "fitted.json", result)
    write_json(out / "fidelity.json", {**result["fidelity"], "click_model": result["click_model"]})
    models = result["click_model"]
    atomic_write_text(out / "fidelity.md", render_report(rows, f"{out / 'scenario.yaml'}", logs, held_out=True) + (
        f"\nHeld-out log-likelihood per impression ({models['impressions']:,} impressions): position-based model "
        f"(fitted by EM) {models['pbm']:.5f}, per-position click rate {models['per_position_ctr']:.5f} "
        f"({'the click model fits better' if models['pbm'] > models['per_position_ctr'] else 'no better'}).\n"))
    plot_positions(rows, out / "ctr_by_position.png")
    mark_complete(out, "calibrate")
    return result
