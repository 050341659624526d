from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustprompt.evals._stats import (
    Interval,
    mcnemar_exact,
    mean,
    paired_mean_diff_ci,
    paired_proportion_diff_ci,
    percentile,
    wilson,
    z_value,
)

Z95 = 1.959963984540054


def approx(interval: Interval | None, low: float, high: float, abs: float = 5e-5) -> bool:
    assert interval is not None
    return interval.low == pytest.approx(low, abs=abs) and interval.high == pytest.approx(high, abs=abs)


# ------------------------------------------------------------------------------------------------ Wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # R. G. Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven methods",
        # Statistics in Medicine 17 (1998) 857-872, Table II, method 3 (Wilson score), printed to 4 decimals.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombes_published_examples(k: int, n: int, low: float, high: float) -> None:
    assert approx(wilson(k, n), low, high)


@pytest.mark.parametrize("n", [1, 7, 50, 1000])
def test_wilson_at_zero_and_all_has_closed_form_ends(n: int) -> None:
    # At 0/n the interval is [0, z^2 / (n + z^2)]; at n/n it is its mirror image.
    edge = Z95**2 / (n + Z95**2)
    assert wilson(0, n) == Interval(0.0, pytest.approx(edge))
    assert wilson(n, n) == Interval(pytest.approx(1 - edge), 1.0)


def test_wilson_has_no_interval_without_cases() -> None:
    assert wilson(0, 0) is None


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5)])
def test_wilson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson(k, n)


def test_z_value_and_its_bounds() -> None:
    assert z_value(0.95) == pytest.approx(Z95)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        z_value(1.0)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_stays_in_unit_range(kn: tuple[int, int]) -> None:
    k, n = kn
    ci = wilson(k, n)
    assert ci is not None
    assert 0.0 <= ci.low <= k / n <= ci.high <= 1.0


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.integers(2, 10))
def test_wilson_shrinks_with_more_cases_at_the_same_rate(kn: tuple[int, int], factor: int) -> None:
    k, n = kn
    small, large = wilson(k, n), wilson(k * factor, n * factor)
    assert small is not None and large is not None
    assert large.high - large.low < small.high - small.low


# ------------------------------------------------------------------------------------------------ Newcombe (paired)


def test_paired_difference_matches_the_published_cavo_example() -> None:
    # Complete response before/after consolidation therapy (Cavo et al. 2012), as worked in Fagerland, Lydersen &
    # Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8: Newcombe's square-and-add interval for the
    # paired difference is -0.0621 (95 % CI -0.1186 to -0.0046).
    assert approx(paired_proportion_diff_ci(59, 6, 16, 80), -0.1186, -0.0046)


def test_paired_difference_is_antisymmetric_in_the_two_sides() -> None:
    forward, backward = paired_proportion_diff_ci(59, 6, 16, 80), paired_proportion_diff_ci(59, 16, 6, 80)
    assert forward is not None and backward is not None
    assert backward.low == pytest.approx(-forward.high) and backward.high == pytest.approx(-forward.low)


def test_paired_difference_without_cases_is_none() -> None:
    assert paired_proportion_diff_ci(0, 0, 0, 0) is None


def test_paired_difference_of_identical_sides_straddles_zero() -> None:
    ci = paired_proportion_diff_ci(30, 0, 0, 20)
    assert ci is not None and ci.low < 0 < ci.high


tables = st.tuples(*[st.integers(0, 60)] * 4).filter(lambda t: sum(t) > 0)


@given(tables)
def test_paired_difference_contains_the_estimate_and_stays_in_range(table: tuple[int, int, int, int]) -> None:
    a, b, c, d = table
    ci = paired_proportion_diff_ci(a, b, c, d)
    assert ci is not None
    estimate = (b - c) / (a + b + c + d)
    assert -1.0 <= ci.low <= estimate + 1e-12 and estimate - 1e-12 <= ci.high <= 1.0


@given(tables, st.integers(2, 8))
def test_paired_difference_shrinks_with_more_cases(table: tuple[int, int, int, int], factor: int) -> None:
    small, large = paired_proportion_diff_ci(*table), paired_proportion_diff_ci(*(x * factor for x in table))
    assert small is not None and large is not None
    assert large.high - large.low < small.high - small.low + 1e-12


# ------------------------------------------------------------------------------------------------ McNemar


def test_mcnemar_exact_by_hand() -> None:
    # b=0, c=5: the only outcomes as extreme are 0/5 and 5/0, each 1/32 -> p = 2/32.
    assert mcnemar_exact(0, 5) == 2 / 32
    # Cavo et al.: b=6, c=16 -> 2 * sum_{k<=6} C(22, k) / 2^22 = 2 * 110056 / 4194304 (0.052 in Fagerland et al.).
    assert mcnemar_exact(6, 16) == 2 * 110_056 / 4_194_304
    assert mcnemar_exact(1, 7) == pytest.approx(0.0703125)


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    assert mcnemar_exact(0, 0) == 1.0


def test_mcnemar_is_exact_for_large_n() -> None:
    # 476 vs 147 discordant pairs (LLMDrift's GPT-4 accuracy change): far beyond float range of the binomial terms.
    p = mcnemar_exact(476, 147)
    assert 0.0 < p < 1e-30
    assert mcnemar_exact(500, 500) == 1.0


@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_is_a_symmetric_probability(b: int, c: int) -> None:
    p = mcnemar_exact(b, c)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_exact(c, b)


@given(st.integers(0, 150), st.integers(0, 150))
def test_mcnemar_falls_as_the_imbalance_grows(b: int, extra: int) -> None:
    assert mcnemar_exact(b, b + extra + 1) <= mcnemar_exact(b, b + extra)


# ------------------------------------------------------------------------------------------------ means, percentiles


def test_paired_mean_difference_uses_the_normal_approximation() -> None:
    ci = paired_mean_diff_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = Z95 * math.sqrt(2.5) / math.sqrt(5)
    assert approx(ci, 3 - half, 3 + half, abs=1e-12)


def test_paired_mean_difference_needs_two_cases() -> None:
    assert paired_mean_diff_ci([4.0]) is None
    assert paired_mean_diff_ci([]) is None


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=60))
def test_paired_mean_difference_contains_the_mean(diffs: list[float]) -> None:
    ci, centre = paired_mean_diff_ci(diffs), mean(diffs)
    assert ci is not None and centre is not None
    assert ci.low <= centre + 1e-6 and centre - 1e-6 <= ci.high


def test_mean_of_nothing_is_none() -> None:
    assert mean([]) is None
    assert mean([1, 2]) == 1.5


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 95, 3.85),  # numpy.percentile([1, 2, 3, 4], 95) with linear interpolation
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([7], 95, 7),
        ([10, 0, 5], 50, 5),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_and_within_the_data(values: list[float], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    p_lo, p_hi = percentile(values, lo), percentile(values, hi)
    assert p_lo is not None and p_hi is not None
    assert min(values) - 1e-6 <= p_lo <= p_hi + 1e-6 and p_hi <= max(values) + 1e-6
