"""TensorBoard tags, defined once. The x-axis of every curve is simulated requests."""

REWARD = "charts/reward_per_request"
CTR = "charts/ctr"
CONVERSION = "charts/purchases_per_request"
REVENUE = "charts/revenue_per_request"
REGRET = "charts/cumulative_regret"
"""Sum over requests of (the oracle's expected reward in the request's context cell - the reward)."""
REQUESTS_PER_SECOND = "train/requests_per_second"


def arm_weight(segment: str, arm: str) -> str:
    """Mean weight the policy gave ``arm`` on requests of ``segment`` in the last interval."""
    return f"fusion/weights/{segment}/{arm}"
