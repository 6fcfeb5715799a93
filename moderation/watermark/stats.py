"""The statistics of the KGW test, kept honest.

Under H0 ("a human wrote this") each counted token is green with probability gamma, independently, so
the green count G of T counted tokens is Binomial(T, gamma). We report the z-score, because people
compare z, but decide with the EXACT one-sided binomial tail P(X >= G): the normal approximation behind
"z > 4" is too lenient for short posts (about 9x its nominal false-positive rate at 16 tokens).

The tail is computed in log space and never underflows to 0: when it is too small for a double, the
sum of binomial probabilities is taken with logsumexp from G upwards (the terms fall geometrically
there, so a few thousand terms are exact to double precision).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from scipy.special import bdtrc, gammaln, logsumexp

# Below this, scipy's survival function is computed with full relative accuracy; further out we sum
# log-probabilities ourselves.
_SAFE_SF = 1e-280
_SERIES_TERMS = 4000
LN10 = math.log(10.0)
# The smallest positive double: reported instead of an underflowed 0.0 (log10_p_value has the truth).
SMALLEST_P = 5e-324


def z_scores(green: npt.ArrayLike, scored: npt.ArrayLike, gamma: float) -> npt.NDArray[np.float64]:
    """z = (G - gamma T) / sqrt(T gamma (1 - gamma)); NaN where T = 0."""
    g = np.asarray(green, dtype=np.float64)
    t = np.asarray(scored, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g - gamma * t) / np.sqrt(t * gamma * (1.0 - gamma))
    z[t <= 0] = np.nan
    return np.asarray(z, dtype=np.float64)


def log_binomial_tail(green: npt.ArrayLike, scored: npt.ArrayLike, gamma: float) -> npt.NDArray[np.float64]:
    """Natural log of P(X >= G) for X ~ Binomial(T, gamma), elementwise; 0 where G <= 0."""
    g = np.atleast_1d(np.asarray(green, dtype=np.int64))
    t = np.atleast_1d(np.asarray(scored, dtype=np.int64))
    out = np.zeros(g.shape, dtype=np.float64)
    active = g > 0
    if not active.any():
        return out
    sf = bdtrc(g[active] - 1, t[active], gamma)  # P(X > G - 1), scipy.special: lighter to import than stats
    logs = np.full(sf.shape, -np.inf)
    safe = sf > _SAFE_SF
    logs[safe] = np.log(sf[safe])
    for k in np.flatnonzero(~safe):
        gk, tk = int(g[active][k]), int(t[active][k])
        if gk > tk:
            continue  # impossible count: probability 0 (cannot come from real scoring)
        terms = np.arange(gk, min(tk, gk + _SERIES_TERMS) + 1)
        log_pmf = (
            gammaln(tk + 1)
            - gammaln(terms + 1)
            - gammaln(tk - terms + 1)
            + terms * math.log(gamma)
            + (tk - terms) * math.log1p(-gamma)
        )
        logs[k] = float(logsumexp(log_pmf))
    out[active] = logs
    return out


def p_value_from_log(log_p: float) -> float:
    """A p-value as a float that is never 0 by underflow."""
    return max(math.exp(log_p), SMALLEST_P) if log_p > -745.0 else SMALLEST_P


def bonferroni_log(log_p: float, tests: int) -> float:
    """log of min(1, tests * p): the family-wise adjusted p-value of the best of `tests` tests."""
    return min(0.0, log_p + math.log(max(1, tests)))


def min_green_for(scored: int, gamma: float, alpha: float) -> int:
    """The smallest green count that rejects H0 at level alpha for `scored` tokens (scored + 1 if none)."""
    lo, hi = 0, scored + 1
    log_alpha = math.log(alpha)
    while lo < hi:
        mid = (lo + hi) // 2
        if log_binomial_tail(mid, scored, gamma)[0] <= log_alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


@functools.lru_cache(maxsize=65_536)
def detection_threshold(scored: int, gamma: float, alpha: float) -> int:
    """min_green_for, cached: a detector asks for few distinct (length, level) pairs."""
    return min_green_for(scored, gamma, alpha)


def power(scored: int, gamma: float, alpha: float, green_fraction: float) -> float:
    """P(the exact test at level alpha flags T = `scored` tokens), when each is green with probability
    `green_fraction`: how likely this post's test was to see a watermark of that strength."""
    threshold = detection_threshold(scored, gamma, alpha)
    if threshold > scored:
        return 0.0
    return float(bdtrc(threshold - 1, scored, green_fraction)) if threshold > 0 else 1.0
