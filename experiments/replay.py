"""``fusionsim replay``: simulated shoppers against a running ``fusionsim serve`` over HTTP.

The simulator serves its requests through the one request path with the fusion stage behind HTTP
(``serving.remote.RemoteFusion``): each step sends every slot's request to ``/rank`` in one batch, shows the
slates the service chose to the simulated shoppers, and posts their clicks, purchases and revenue to
``/reward``. With a service started with ``--learn`` the replay is online learning through the service; its
learning curve is written like ``fusionsim train``'s (TensorBoard and ``metrics.json``'s ``curve``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.scenario import load_scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop, same_world
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments import tags
from fusionsim.experiments.metrics import TrafficMetrics
from fusionsim.experiments.online import batch_means_interval
from fusionsim.experiments.runs import write_config, write_json
from fusionsim.experiments.serving.client import ClientError, FusionClient
from fusionsim.experiments.serving.remote import RemoteFusion


class ReplayError(ValueError):
    """A replay that cannot run against this server; the message is one line."""


@dataclass(frozen=True)
class ReplayConfig:
    """What one ``fusionsim replay`` does; written whole as ``config.yaml``'s ``args``."""

    server: str
    """the service's address, http://host:port"""
    scenario: str = "default"
    """the shop whose shoppers are replayed (its world must be the served policy's)"""
    requests: int = 100_000
    """simulated requests"""
    base: str | None = None
    """folder of trained arms (None: popularity and new arrivals); the served policy's arms"""
    slots: int = 256
    """concurrent shopper sessions: requests per /rank batch"""
    seed: int = 0
    """seed of the simulator"""
    log_every: int = 20_000
    """requests between points of the learning curve"""


def run_replay(config: ReplayConfig, out: Path, progress: bool = False) -> dict:
    """Replay ``config.requests`` simulated requests against the service; write ``config.yaml``,
    ``metrics.json``, ``report.md``, TensorBoard events and ``complete.json`` to ``out``; return the metrics."""
    client = FusionClient(config.server)
    try:
        health = client.health()
    except (OSError, ClientError) as exc:
        raise ReplayError(f"--server {config.server} does not answer /health ({exc}); start fusionsim serve "
                          "first") from None
    scenario = load_scenario(config.scenario)
    world, arms = make_shop(scenario, base=config.base)
    arm_names = [a.name for a in arms]
    shop = health.get("shop", {})
    if shop.get("arms") != arm_names:
        served_arms = ", ".join(shop.get("arms", []))
        raise ReplayError(f"--server {config.server} serves a policy over the arms [{served_arms}]; "
                          f"this shop's arms are [{', '.join(arm_names)}] (give the --base the policy used)")
    if not same_world(shop.get("world", {}), scenario):
        raise ReplayError(f"--server {config.server} serves a policy made for scenario "
                          f"'{shop.get('world', {}).get('scenario')}', whose world differs from scenario "
                          f"'{scenario.name}'")
    write_config(out, "replay", dataclasses.asdict(config), scenario=scenario_to_dict(scenario), arms=arm_names,
                 served=health)
    fusion = RemoteFusion(client, arm_names)
    sim = BatchedSimulator(world, arms, n_slots=min(config.slots, config.requests), fusion=fusion)
    fusion.attach(sim)
    sim.reset(seed=config.seed)
    writer = SummaryWriter(str(out / "tensorboard"))
    traffic = TrafficMetrics(sim.slate_size)
    statuses = {"joined": 0, "duplicate": 0, "late": 0}
    curve, interval_reward, interval_requests, done = [], 0.0, 0, 0
    rewards = []
    while done < config.requests:
        try:
            result = sim.step(None)
            revenue_per_slot = sim.catalog.price[result.slate] * result.purchased
            answered = fusion.post_outcomes(result.clicks, result.purchased, revenue_per_slot)
        except ClientError as exc:
            raise ReplayError(f"--server {config.server} refused the replay after {done:,} requests: {exc}") from None
        except OSError as exc:
            raise ReplayError(f"--server {config.server} stopped answering after {done:,} requests "
                              f"({exc.strerror or type(exc).__name__})") from None
        for status in answered:
            statuses[status] += 1
        n = min(len(result.reward), config.requests - done)
        traffic.update(result, n)
        rewards.append(result.reward[:n].astype(np.float64))
        interval_reward += float(result.reward[:n].sum(dtype=np.float64))
        interval_requests += n
        done += n
        if interval_requests >= config.log_every or done >= config.requests:
            curve.append([done, interval_reward / interval_requests])
            writer.add_scalar(tags.REWARD, interval_reward / interval_requests, done)
            interval_reward, interval_requests = 0.0, 0
            if progress:
                print(f"{done:,} requests, reward per request {curve[-1][1]:.4f}", flush=True)
    writer.close()
    client.close()
    reward = np.concatenate(rewards)
    metrics = {"requests": done, "reward_per_request": float(reward.mean()), "reward_sd": float(reward.std(ddof=1)),
               "reward_per_request_ci95": list(batch_means_interval(np.array([r.mean() for r in rewards]))),
               "traffic": traffic.summary(), "rewards": statuses, "final_policy_version": fusion.policy_version,
               "curve": curve}
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, config))
    mark_complete(out, "replay")
    return metrics


def render_report(metrics: dict, config: ReplayConfig) -> str:
    lo, hi = metrics["reward_per_request_ci95"]
    lines = [f"# Replay against {config.server}", "",
             f"{metrics['requests']:,} simulated requests of scenario `{config.scenario}` (seed {config.seed}, "
             f"{config.slots} sessions at a time).", "",
             f"- reward per request: **{metrics['reward_per_request']:.4f}** [{lo:.4f}, {hi:.4f}] (95%, batch means "
             "over consecutive steps, which share sessions)",
             f"- outcomes posted: {metrics['rewards']['joined']:,} joined, {metrics['rewards']['duplicate']:,} "
             f"duplicate, {metrics['rewards']['late']:,} late",
             f"- policy version at the end: {metrics['final_policy_version']}", "",
             "| requests | reward per request (interval) |", "|---:|---:|"]
    lines += [f"| {n:,} | {r:.4f} |" for n, r in metrics["curve"]]
    return "\n".join(lines) + "\n"
