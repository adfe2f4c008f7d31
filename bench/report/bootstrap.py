"""Intervals for "datasets like these": a two-level bootstrap of the aggregate skill.

:mod:`bench.report.aggregate` resamples the seeds within each of the study's datasets, so its
intervals answer "these datasets again, with other seeds" and are narrow whenever seeds agree.
The question a reader brings is about datasets like these, and the datasets are the larger
source of spread. Here each bootstrap replicate first draws the datasets with replacement,
then the runs within every drawn dataset (Davison and Hinkley 1997, section 3.8, the
two-stage bootstrap), and every dataset weighs the same whatever its seed count: a run of a
dataset with n seeds weighs 1/n, so a ten-seed dataset does not count twice a five-seed one.

The interquartile mean of weighted runs is the mean of the middle half of the weight (the
runs straddling the 25% and 75% points count with the part of their weight inside); with equal
weights and a run count divisible by four it is scipy's ``trim_mean(x, 0.25)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bench.report.aggregate import BOOTSTRAP_REPS, BOOTSTRAP_SEED, Estimate


def _clean(tasks: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(t, float) for t in tasks]
    return [t[np.isfinite(t)] for t in out]


def weighted_iqm(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row of ``values`` under its row of ``weights`` (rows need
    not sum to one; zero weights are padding)."""
    v, w = np.atleast_2d(np.asarray(values, float)), np.atleast_2d(np.asarray(weights, float))
    order = np.argsort(v, axis=1, kind="stable")
    v, w = np.take_along_axis(v, order, 1), np.take_along_axis(w, order, 1)
    w = w / w.sum(axis=1, keepdims=True)
    upper = np.cumsum(w, axis=1)
    lower = upper - w
    inside = np.clip(np.minimum(upper, 0.75) - np.maximum(lower, 0.25), 0.0, None)
    return (np.where(inside > 0, v, 0.0) * inside).sum(axis=1) / 0.5


def equal_weight_iqm(tasks: Sequence[np.ndarray]) -> float:
    """IQM of all runs, every dataset weighing the same."""
    tasks = [t for t in _clean(tasks) if len(t)]
    if not tasks:
        return math.nan
    v = np.concatenate(tasks)
    w = np.concatenate([np.full(len(t), 1.0 / len(t)) for t in tasks])
    return float(weighted_iqm(v, w)[0])


def _draw(tasks: list[np.ndarray], picks: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Runs resampled within the datasets drawn in ``picks`` (reps, q), padded to the most
    seeds, with weights 1/n (0 on padding): arrays (reps, q * most)."""
    reps, q = picks.shape
    most = max(len(t) for t in tasks)
    sizes = np.array([len(t) for t in tasks])
    table = np.zeros((len(tasks), most))
    for i, t in enumerate(tasks):
        table[i, :len(t)] = t
    n = sizes[picks]                                           # (reps, q)
    idx = (rng.random((reps, q, most)) * n[:, :, None]).astype(int)
    vals = table[picks[:, :, None], idx]
    w = np.where(np.arange(most)[None, None, :] < n[:, :, None], 1.0 / n[:, :, None], 0.0)
    return vals.reshape(reps, -1), w.reshape(reps, -1)


def _interval(boots: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.percentile(boots, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def iqm_interval(tasks: Sequence[np.ndarray], confidence: float = 0.95,
                 reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """Equal-weight IQM with a two-level bootstrap percentile interval."""
    tasks = [t for t in _clean(tasks) if len(t)]
    point = equal_weight_iqm(tasks)
    if len(tasks) < 2:
        return Estimate(point, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(tasks), (reps, len(tasks)))
    vals, w = _draw(tasks, picks, rng)
    return Estimate(point, *_interval(weighted_iqm(vals, w), confidence))


def _poi_within(a: np.ndarray, b: np.ndarray) -> float:
    d = a[:, None] - b[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def improvement_interval(x: Sequence[np.ndarray], y: Sequence[np.ndarray],
                         confidence: float = 0.95, reps: int = BOOTSTRAP_REPS,
                         seed: int = BOOTSTRAP_SEED) -> Estimate:
    """P(a run of X beats a run of Y) averaged over datasets (each weighing the same), with a
    two-level bootstrap interval: datasets drawn, then X's and Y's runs within each."""
    pairs = [(a, b) for a, b in zip(_clean(x), _clean(y), strict=True) if len(a) and len(b)]
    if not pairs:
        return Estimate(math.nan, math.nan, math.nan)
    point = float(np.mean([_poi_within(a, b) for a, b in pairs]))
    if len(pairs) < 2:
        return Estimate(point, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    q = len(pairs)
    picks = rng.integers(0, q, (reps, q))
    per_task = np.empty((reps, q))
    for i, (a, b) in enumerate(pairs):   # within-dataset resamples of each dataset, per replicate
        ra = a[rng.integers(0, len(a), (reps, len(a)))]
        rb = b[rng.integers(0, len(b), (reps, len(b)))]
        d = ra[:, :, None] - rb[:, None, :]
        per_task[:, i] = ((d > 0).sum(axis=(1, 2)) + 0.5 * (d == 0).sum(axis=(1, 2))) / d[0].size
    boots = np.take_along_axis(per_task, picks, axis=1).mean(axis=1)
    return Estimate(point, *_interval(boots, confidence))
