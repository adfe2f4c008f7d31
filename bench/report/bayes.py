"""Bayesian comparisons: how probable is "better", "practically equivalent", "worse"?

A test can only say "not significant"; with five seeds that mostly means "not enough data".
With a region of practical equivalence (ROPE) the posterior of the difference of means says
how much of it lies beyond the ROPE on either side (Benavoli et al. 2017, "Time for a change",
JMLR 18), so the report can state "practically equivalent" when that is what the runs show.

* **Per dataset** the seeds of two architectures are *not* paired (a seed fixes the data order,
  not the initialisation), so baycomp's correlated t-test, which models paired cross-validation
  folds, does not fit. Its unpaired analogue is used instead: each architecture's mean has the
  Student-t posterior of the normal model under the Jeffreys prior,
  mu | x ~ mean(x) + s / sqrt(n) * t_(n-1), and the probabilities of the difference of two
  such means (the Behrens-Fisher posterior) are integrated numerically. Against a constant
  (the deterministic naive baseline) it is exactly baycomp's single-dataset posterior
  (``baycomp.single.Posterior``) with variance s^2/n and n-1 degrees of freedom, which the
  tests check.
* **Across datasets** the Bayesian signed-rank test (Benavoli et al. 2014/2017) is baycomp's
  ``SignedRankTest``, sampled with a fixed random state so that the report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as ss

BAYES_LEVEL = 0.95        # a posterior probability that decides (Benavoli et al. 2017)
SIGNED_RANK_SAMPLES = 20_000
SIGNED_RANK_SEED = 0


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(2000)
_U, _W = (_NODES + 1) / 2, _WEIGHTS / 2       # Gauss-Legendre on (0, 1)


@dataclass(frozen=True)
class Probs:
    """P(first is better by more than the ROPE), P(within the ROPE), P(worse by more)."""

    better: float
    equivalent: float
    worse: float

    def decided(self, level: float = BAYES_LEVEL) -> str:
        """Benavoli's reading: a probability of at least ``level`` decides, else undecided."""
        for name, p in (("better", self.better), ("equivalent", self.equivalent),
                        ("worse", self.worse)):
            if np.isfinite(p) and p >= level:
                return name
        return "undecided"


NAN = Probs(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class MeanPosterior:
    loc: float
    scale: float      # 0: a point mass (a constant sample)
    df: float

    def cdf(self, x):
        if self.scale == 0:
            return np.where(np.asarray(x) >= self.loc, 1.0, 0.0)
        return ss.t.cdf((np.asarray(x) - self.loc) / self.scale, self.df)


def mean_posterior(values: Sequence[float]) -> MeanPosterior | None:
    """Posterior of the mean under the normal model with the Jeffreys prior; None with fewer
    than two finite values (no estimate of the noise)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    s = float(x.std(ddof=1))
    return MeanPosterior(float(x.mean()), s / math.sqrt(len(x)), len(x) - 1)


def _cdf_of_difference(a: MeanPosterior, b: MeanPosterior, c: float) -> float:
    """P(mu_a - mu_b <= c) for independent posteriors."""
    if a.scale == 0 and b.scale == 0:
        return 1.0 if a.loc - b.loc <= c else 0.0
    if b.scale == 0:
        return float(a.cdf(b.loc + c))
    if a.scale == 0:
        return float(1.0 - b.cdf(a.loc - c))

    # E_b[F_a(mu_b + c)] as an integral over b's quantiles u in (0, 1): the integrand is
    # bounded and smooth, so a fixed Gauss-Legendre rule is exact to ~1e-9 and vectorised.
    z = ss.t.ppf(_U, b.df)
    return float(np.clip(np.dot(_W, a.cdf(b.loc + b.scale * z + c)), 0.0, 1.0))


def difference_probs(
    a: Sequence[float], b: Sequence[float], rope: float, direction: str = "maximize"
) -> Probs:
    """P(a better than b by more than ``rope``), P(|difference| <= rope), P(a worse by more).

    ``direction`` says which way is better; ``rope`` is a half-width in the scores' units
    (NaN or 0: no equivalence region, so "equivalent" has probability 0 unless both samples
    are constants with equal means).
    """
    pa, pb = mean_posterior(a), mean_posterior(b)
    if pa is None or pb is None:
        return NAN
    r = abs(rope) if rope is not None and np.isfinite(rope) else 0.0
    if direction == "minimize":
        pa, pb = (MeanPosterior(-pa.loc, pa.scale, pa.df), MeanPosterior(-pb.loc, pb.scale, pb.df))
    elif direction != "maximize":
        raise ValueError(f"direction: {direction!r} is not allowed; expected 'maximize' or 'minimize'")
    below = _cdf_of_difference(pa, pb, -r)                   # P(D <= -r): worse (ties at 0 width)
    if pa.scale == 0 and pb.scale == 0:
        d = pa.loc - pb.loc
        return Probs(float(d > r), float(abs(d) <= r), float(d < -r))
    upto = _cdf_of_difference(pa, pb, r)                     # P(D <= r)
    worse, better = below, 1.0 - upto
    return Probs(better, max(0.0, 1.0 - better - worse), worse)


def signed_rank(
    x: Sequence[float], y: Sequence[float], rope: float, *, nsamples: int = SIGNED_RANK_SAMPLES,
    seed: int = SIGNED_RANK_SEED,
) -> Probs:
    """Bayesian signed-rank test of x against y over datasets (baycomp): P(x better by more
    than ``rope``), P(equivalent), P(y better). Scores must be on a common scale where larger
    is better (the report uses the normalised skill score). NaN with fewer than two pairs."""
    from baycomp import SignedRankTest

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if len(xs) < 2:
        return NAN
    left, mid, right = SignedRankTest.probs(xs, ys, rope=max(float(rope), 1e-12),
                                            nsamples=nsamples, random_state=seed)
    return Probs(float(left), float(mid), float(right))
