"""Small statistics for benchmark samples: median and spread, nothing fancy."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["summarize"]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, interquartile range, extremes and the raw samples."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p25": _quantile(ordered, 0.25),
        "p75": _quantile(ordered, 0.75),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
        "samples": list(values),
    }
