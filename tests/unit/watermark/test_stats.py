from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from moderation.watermark.stats import (
    SMALLEST_P,
    bonferroni_log,
    log_binomial_tail,
    min_green_for,
    p_value_from_log,
    z_scores,
)


def brute_force_log_tail(g: int, t: int, gamma: float) -> float:
    """log P(X >= g) by summing exact rational-free terms with math.lgamma (slow, obviously right)."""
    terms = [
        math.lgamma(t + 1)
        - math.lgamma(k + 1)
        - math.lgamma(t - k + 1)
        + k * math.log(gamma)
        + (t - k) * math.log1p(-gamma)
        for k in range(g, t + 1)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(x - top) for x in terms))


@pytest.mark.parametrize(
    ("g", "t"), [(1, 1), (4, 16), (16, 16), (30, 100), (300, 1000), (600, 1000), (1000, 1000), (5000, 5000)]
)
def test_exact_tail_matches_brute_force_even_far_below_double_range(g: int, t: int) -> None:
    got = float(log_binomial_tail(g, t, 0.25)[0])
    assert got == pytest.approx(brute_force_log_tail(g, t, 0.25), rel=1e-9, abs=1e-9)
    assert math.isfinite(got)


def test_tail_is_one_for_nonpositive_counts_and_vectorized() -> None:
    out = log_binomial_tail(np.array([0, 5, 10]), np.array([10, 10, 10]), 0.5)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(math.log(binom.sf(4, 10, 0.5)))
    assert out[2] == pytest.approx(10 * math.log(0.5))


def test_p_value_never_underflows_to_zero() -> None:
    log_p = float(log_binomial_tail(5000, 5000, 0.25)[0])  # about 1e-3010
    assert log_p < -6000
    assert p_value_from_log(log_p) == SMALLEST_P > 0.0


def test_z_score_formula_and_empty_posts() -> None:
    z = z_scores([25, 50, 0], [100, 100, 0], 0.25)
    assert z[0] == 0.0
    assert z[1] == pytest.approx(25 / math.sqrt(100 * 0.25 * 0.75))
    assert math.isnan(z[2])


def test_bonferroni_caps_at_one() -> None:
    assert bonferroni_log(math.log(0.01), 10) == pytest.approx(math.log(0.1))
    assert bonferroni_log(math.log(0.5), 10) == 0.0


def test_exact_threshold_is_stricter_than_z4_for_short_posts() -> None:
    # The normal approximation's "z > 4" at 16 tokens needs G >= 12; the exact test at its nominal
    # rate (3.17e-5) needs more, which is the point of using it.
    g_exact = min_green_for(16, 0.25, 3.17e-5)
    g_z4 = math.ceil(0.25 * 16 + 4 * math.sqrt(16 * 0.25 * 0.75) + 1e-9)
    assert g_exact > g_z4
    assert (
        math.exp(log_binomial_tail(g_exact, 16, 0.25)[0])
        <= 3.17e-5
        < math.exp(log_binomial_tail(g_exact - 1, 16, 0.25)[0])
    )


def test_exact_test_false_positive_rate_is_at_most_alpha() -> None:
    # Under H0 the rejection probability of "G >= min_green_for(T)" is P(X >= that) <= alpha, for every T.
    for t in (16, 17, 50, 200, 800):
        g = min_green_for(t, 0.25, 1e-3)
        assert binom.sf(g - 1, t, 0.25) <= 1e-3


@pytest.mark.parametrize(("tokens", "low", "high"), [(16, 8.0, 12.0), (100, 1.5, 3.0), (800, 1.2, 2.5)])
def test_real_rate_of_the_normal_z4_rule(tokens: int, low: float, high: float) -> None:
    """What a "z >= 4" rule really flags at gamma 0.25, by exact enumeration: P(z(X) >= 4) for X ~ B(T, 0.25),
    against the 3.17e-5 it claims. This is why z_threshold only states a rate and the exact tail decides."""
    from moderation.config import normal_tail

    green = np.arange(tokens + 1)
    flagged = green[z_scores(green, np.full(tokens + 1, tokens), 0.25) >= 4.0]
    real = float(binom.sf(flagged.min() - 1, tokens, 0.25))
    assert low < real / normal_tail(4.0) < high
    # The exact rule at the nominal rate never exceeds it.
    assert binom.sf(min_green_for(tokens, 0.25, normal_tail(4.0)) - 1, tokens, 0.25) <= normal_tail(4.0)
