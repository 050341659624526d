"""Small, exact statistics for comparing two models on the same cases (standard library only).

Every function takes counts or plain numbers and returns plain numbers, so the comparison and the reports stay pure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Interval",
    "mcnemar_exact",
    "mean",
    "paired_mean_diff_ci",
    "paired_proportion_diff_ci",
    "percentile",
    "wilson",
    "z_value",
]


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def z_value(level: float) -> float:
    """The two-sided normal quantile for a confidence level (0.95 -> 1.95996...)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    return statistics.NormalDist().inv_cdf(0.5 + level / 2)


def wilson(successes: int, n: int, level: float = 0.95) -> Interval | None:
    """Wilson score interval for successes/n (Wilson 1927); None when n == 0, where no rate exists.

    Chosen over the Wald interval because it stays inside [0, 1] and keeps its coverage at 0/n and n/n, which are
    common here (a model that is always valid, or always fails)."""
    _check_counts(successes, n)
    if n == 0:
        return None
    z = z_value(level)
    p = successes / n
    shrink = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The algebra gives exactly 0 at 0/n and 1 at n/n; rounding would leave an ulp either side, so say it exactly.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def paired_proportion_diff_ci(
    both: int, first_only: int, second_only: int, neither: int, level: float = 0.95
) -> Interval | None:
    """CI for p1 - p2, two proportions measured on the same cases; None when there are no cases.

    `both`, `first_only`, `second_only`, `neither` are the four cells of the paired 2x2 table (success on both, on
    the first only, ...). Newcombe's hybrid score ("square-and-add") method for paired data, his method 10:
    R. G. Newcombe, "Improved confidence intervals for the difference between binomial proportions based on paired
    data", Statistics in Medicine 17 (1998) 2635-2650. It combines the Wilson intervals of the two margins, using
    their correlation phi; as in Newcombe's method (and Fagerland, Lydersen & Laake, "Statistical Analysis of
    Contingency Tables", 2017, ch. 8), a positive ad - bc is shrunk by n/2 (to no less than 0) before phi is formed.
    """
    for count in (both, first_only, second_only, neither):
        _check_counts(count, count)
    n = both + first_only + second_only + neither
    first, second = wilson(both + first_only, n, level), wilson(both + second_only, n, level)
    if first is None or second is None:
        return None
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    phi = _corrected_phi(both, first_only, second_only, neither)
    low_gap = _combine(p1 - first.low, second.high - p2, phi)
    high_gap = _combine(first.high - p1, p2 - second.low, phi)
    return Interval(max(-1.0, p1 - p2 - low_gap), min(1.0, p1 - p2 + high_gap))


def _corrected_phi(a: int, b: int, c: int, d: int) -> float:
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    n = a + b + c + d
    cross = a * d - b * c
    corrected = max(cross - n / 2, 0.0) if cross >= 0 else float(cross)
    return corrected / math.sqrt(margins)


def _combine(x: float, y: float, phi: float) -> float:
    # max() guards the square root against a negative rounding residue when x and y are both ~0.
    return math.sqrt(max(0.0, x * x - 2 * phi * x * y + y * y))


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (b, c).

    Conditional on b + c discordant pairs, b ~ Binomial(b + c, 1/2) under "no difference"; the p-value doubles the
    smaller tail, capped at 1. Exact for any n (integer arithmetic, one correctly rounded division at the end), and 1.0
    when there is no discordant pair, i.e. no evidence of a difference."""
    _check_counts(first_only, first_only)
    _check_counts(second_only, second_only)
    total = first_only + second_only
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(first_only, second_only) + 1))
    return min(1.0, 2 * tail / (1 << total))


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def paired_mean_diff_ci(diffs: Sequence[float], level: float = 0.95) -> Interval | None:
    """Normal-approximation CI for the mean of paired differences (mean +- z * sd / sqrt(n)).

    Fine for n >= 30, where the central limit theorem makes the mean close to normal even for skewed measures such as
    latency or answer length; for fewer cases it is optimistic (a t quantile would be wider). None for n < 2, where no
    spread can be estimated."""
    if len(diffs) < 2:
        return None
    centre = math.fsum(diffs) / len(diffs)
    half = z_value(level) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Interval(centre - half, centre + half)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between order statistics (numpy's default); None if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _check_counts(successes: int, n: int) -> None:
    if successes < 0 or n < successes:
        raise ValueError(f"counts must satisfy 0 <= successes <= n, got {successes} of {n}")
