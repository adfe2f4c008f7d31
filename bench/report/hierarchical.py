"""A hierarchical Bayesian comparison of two architectures across datasets, on seed-level skill.

The signed-rank tests see one number per dataset and forget how noisy it is; a mean over five
noisy seeds counts as much as one over ten quiet ones. The hierarchical model of Corani,
Benavoli, Demšar, Mangili and Zaffalon (2017), "Statistical comparison of classifiers through
Bayesian hierarchical modelling" (Machine Learning 106), keeps every run: each dataset has its
own true difference, drawn from a Student-t population of differences, and the seeds measure
it with noise. baycomp's ``HierarchicalTest`` implements it, but needs PyStan (a C++ toolchain
at run time) and models paired cross-validation folds; here the seeds of two architectures
are not paired (see :mod:`bench.report.stats`), so the model below is the unpaired analogue,
sampled by a seeded Gibbs sampler in numpy (every conditional is conjugate once the
Student-t is written as a scale mixture of normals), so the report is reproducible.

The model, for architectures A and B on datasets i = 1..q, skill of seed j:

    a_ij ~ Normal(m_i + delta_i / 2, sigma_Ai^2)       b_ik ~ Normal(m_i - delta_i / 2, sigma_Bi^2)
    delta_i ~ Student-t(nu = 4, location mu, scale sigma0)
    priors: mu ~ Uniform(-2, 2), sigma0 ~ Uniform(0, 2)  (skill units),
            p(m_i) flat, p(sigma^2) proportional to 1 / sigma^2 (Jeffreys) for every seed SD.

``mu`` is the mean difference over datasets like these; P(mu > rope), P(|mu| <= rope) and
P(mu < -rope) are the probabilities of "A better", "practically equivalent", "A worse". nu = 4
(a fixed heavy tail, as Corani et al.'s ablation recommends for small q) keeps one odd dataset
from dragging mu.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from bench.report import bayes

NU = 4.0
MU_BOUND = 2.0
SIGMA0_BOUND = 2.0
ITERATIONS = 6000
BURN_IN = 1000
SEED = 0
MODEL = (f"delta_i ~ Student-t(nu = {NU:g}, mu, sigma0) per dataset, seeds ~ Normal around each "
         f"architecture's level with their own SD; priors mu ~ Uniform(-{MU_BOUND:g}, "
         f"{MU_BOUND:g}), sigma0 ~ Uniform(0, {SIGMA0_BOUND:g}), flat dataset levels, Jeffreys "
         "1/sigma^2 on every seed variance")


@dataclass(frozen=True)
class Posterior:
    """The posterior of ``mu``, the mean difference (first minus second) over datasets."""

    probs: bayes.Probs
    mean: float
    low: float          # 95% equal-tailed credible interval
    high: float
    sigma0: float       # posterior mean of the spread of the per-dataset differences
    datasets: int


NAN = Posterior(bayes.NAN, math.nan, math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class _Stats:
    """Per-dataset sufficient statistics of one side, shaped (pairs, datasets)."""

    n: np.ndarray
    mean: np.ndarray
    ss: np.ndarray      # within-sample sum of squares


def _stats(samples: Sequence[Sequence[np.ndarray]]) -> _Stats:
    n = np.array([[len(x) for x in row] for row in samples], float)
    mean = np.array([[float(np.mean(x)) for x in row] for row in samples])
    ss = np.array([[float(((x - x.mean()) ** 2).sum()) for x in row] for row in samples])
    return _Stats(n, mean, ss)


def _truncated_normal(rng: np.random.Generator, loc: np.ndarray, sd: np.ndarray,
                      lo: float, hi: float) -> np.ndarray:
    a, b = special.ndtr((lo - loc) / sd), special.ndtr((hi - loc) / sd)
    u = a + (b - a) * rng.random(loc.shape)
    return loc + sd * special.ndtri(np.clip(u, 1e-300, 1 - 1e-16))


def _precision_above(rng: np.random.Generator, shape: np.ndarray, rate: np.ndarray,
                     floor: float) -> np.ndarray:
    """Gamma(shape, rate) truncated to values >= ``floor`` (inverse-CDF sampling)."""
    lo = special.gammainc(shape, rate * floor)
    u = lo + (1 - lo) * rng.random(rate.shape)
    return special.gammaincinv(shape, np.clip(u, 0, 1 - 1e-16)) / rate


def compare_many(pairs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
                 rope: float, *, iterations: int = ITERATIONS, burn_in: int = BURN_IN,
                 seed: int = SEED) -> list[Posterior]:
    """The posterior of every pair at once (one vectorised sampler). A pair is (A's runs per
    dataset, B's runs per dataset), datasets in the same order and every pair over the same
    number of datasets; datasets where either side has fewer than two finite runs must be left
    out by the caller. NAN for pairs with fewer than two datasets."""
    clean = [([np.asarray(x, float)[np.isfinite(x)] for x in a],
              [np.asarray(y, float)[np.isfinite(y)] for y in b]) for a, b in pairs]
    if not clean:
        return []
    q = len(clean[0][0])
    if q < 2 or any(len(a) != q or len(b) != q or min(len(x) for x in (*a, *b)) < 2
                    for a, b in clean):
        return [NAN if q < 2 else _single(a, b, rope, iterations, burn_in, seed)
                for a, b in clean]
    sa, sb = _stats([a for a, _ in clean]), _stats([b for _, b in clean])
    draws = _gibbs(sa, sb, iterations, burn_in, seed)
    return [_summary(draws[0][:, p], draws[1][:, p], rope, q) for p in range(len(clean))]


def _single(a: Sequence[np.ndarray], b: Sequence[np.ndarray], rope: float, iterations: int,
            burn_in: int, seed: int) -> Posterior:
    """One pair with its own set of usable datasets."""
    keep = [i for i in range(min(len(a), len(b))) if len(a[i]) >= 2 and len(b[i]) >= 2]
    if len(keep) < 2:
        return NAN
    return compare_many([([a[i] for i in keep], [b[i] for i in keep])], rope,
                        iterations=iterations, burn_in=burn_in, seed=seed)[0]


def _summary(mu: np.ndarray, sigma0: np.ndarray, rope: float, q: int) -> Posterior:
    r = abs(rope)
    better, worse = float(np.mean(mu > r)), float(np.mean(mu < -r))
    lo, hi = np.percentile(mu, [2.5, 97.5])
    return Posterior(bayes.Probs(better, 1.0 - better - worse, worse), float(mu.mean()),
                     float(lo), float(hi), float(sigma0.mean()), q)


def _gibbs(sa: _Stats, sb: _Stats, iterations: int, burn_in: int,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws of (mu, sigma0), each (iterations - burn_in, pairs)."""
    rng = np.random.default_rng(seed)
    pairs, q = sa.mean.shape
    tiny = 1e-12
    d_hat = sa.mean - sb.mean
    delta = d_hat.copy()
    level = (sa.mean + sb.mean) / 2
    lam = np.ones_like(delta)
    mu = d_hat.mean(axis=1)
    sigma0 = np.maximum(d_hat.std(axis=1), 1e-3)
    out_mu = np.empty((iterations - burn_in, pairs))
    out_s0 = np.empty_like(out_mu)
    for it in range(iterations):
        # seed variances given the levels (Jeffreys prior: inverse gamma with n/2)
        ss_a = sa.ss + sa.n * (sa.mean - level - delta / 2) ** 2 + tiny
        ss_b = sb.ss + sb.n * (sb.mean - level + delta / 2) ** 2 + tiny
        var_a = ss_a / (2 * rng.standard_gamma(sa.n / 2))
        var_b = ss_b / (2 * rng.standard_gamma(sb.n / 2))
        va, vb = var_a / sa.n, var_b / sb.n
        # per-dataset difference, the dataset level integrated out
        prior_var = sigma0[:, None] ** 2 * lam
        like_var = va + vb
        post_var = 1 / (1 / prior_var + 1 / like_var)
        post_mean = post_var * (mu[:, None] / prior_var + d_hat / like_var)
        delta = post_mean + np.sqrt(post_var) * rng.standard_normal(delta.shape)
        # the dataset level given the difference
        wa, wb = 1 / va, 1 / vb
        level = ((sa.mean - delta / 2) * wa + (sb.mean + delta / 2) * wb) / (wa + wb) \
            + rng.standard_normal(delta.shape) / np.sqrt(wa + wb)
        # Student-t as a scale mixture: the mixing weights
        z2 = (delta - mu[:, None]) ** 2 / sigma0[:, None] ** 2
        lam = 1 / (rng.standard_gamma((NU + 1) / 2, delta.shape) / ((NU + z2) / 2))
        # population mean (uniform prior: a truncated normal)
        w = 1 / lam
        mu = _truncated_normal(rng, (delta * w).sum(axis=1) / w.sum(axis=1),
                               sigma0 / np.sqrt(w.sum(axis=1)), -MU_BOUND, MU_BOUND)
        # population scale (uniform prior on sigma0: precision ~ Gamma((q - 1) / 2, S / 2))
        s = ((delta - mu[:, None]) ** 2 / lam).sum(axis=1) + tiny
        tau = _precision_above(rng, np.full(pairs, (q - 1) / 2), s / 2, SIGMA0_BOUND ** -2)
        sigma0 = 1 / np.sqrt(tau)
        if it >= burn_in:
            out_mu[it - burn_in], out_s0[it - burn_in] = mu, sigma0
    return out_mu, out_s0
