"""Aggregate scores over datasets and seeds with bootstrap intervals (Agarwal et al. 2021).

"Deep reinforcement learning at the edge of the statistical precipice" (NeurIPS 2021) replaces
the mean over tasks, which one task can dominate, by the interquartile mean (IQM) of all runs'
normalised scores, and the ranking by the probability of improvement P(X > Y): the chance that
a run of X beats a run of Y on a task, averaged over tasks. Both get percentile intervals from
a stratified bootstrap, which resamples the runs within each task. ``rliable`` implements these
but does not import with pandas 3, so here they are in a few lines of numpy, with a fixed seed
so that the report is reproducible. Scores are the skill scores (:mod:`bench.report.skill`),
comparable across datasets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed each side)."""
    x = np.asarray(scores, dtype=float).ravel()
    x = x[np.isfinite(x)]
    return float(stats.trim_mean(x, 0.25)) if len(x) else math.nan


def prob_improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    """P(X > Y) averaged over tasks; per task the Mann-Whitney U / (n m), ties one half."""
    per_task = []
    for a, b in zip(x, y, strict=True):
        a, b = np.asarray(a, float), np.asarray(b, float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) and len(b):
            d = a[:, None] - b[None, :]
            per_task.append(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)
    return float(np.mean(per_task)) if per_task else math.nan


def _resample(tasks: Sequence[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``reps`` stratified resamples: per task a (reps, n) array of runs drawn with replacement."""
    return [t[rng.integers(0, len(t), (reps, len(t)))] if len(t) else np.empty((reps, 0))
            for t in tasks]


def _interval(boots: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.percentile(boots, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def iqm_interval(tasks: Sequence[np.ndarray], confidence: float = 0.95,
                 reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """IQM over all runs of all tasks, with a stratified-bootstrap percentile interval."""
    tasks = [np.asarray(t, float)[np.isfinite(np.asarray(t, float))] for t in tasks]
    point = iqm(np.concatenate(tasks)) if tasks else math.nan
    if not tasks or not np.isfinite(point):
        return Estimate(point, math.nan, math.nan)
    samples = np.concatenate(_resample(tasks, reps, np.random.default_rng(seed)), axis=1)
    boots = stats.trim_mean(samples, 0.25, axis=1)
    return Estimate(point, *_interval(boots, confidence))


def _poi_batch(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
    per_task = []
    for a, b in zip(x, y, strict=True):
        if a.shape[1] and b.shape[1]:
            d = a[:, :, None] - b[:, None, :]
            per_task.append(((d > 0).sum(axis=(1, 2)) + 0.5 * (d == 0).sum(axis=(1, 2)))
                            / (d.shape[1] * d.shape[2]))
    return np.mean(per_task, axis=0)


def improvement_interval(x: Sequence[np.ndarray], y: Sequence[np.ndarray],
                         confidence: float = 0.95, reps: int = BOOTSTRAP_REPS,
                         seed: int = BOOTSTRAP_SEED) -> Estimate:
    """P(X > Y) with a stratified-bootstrap percentile interval (X and Y resampled
    independently within each task)."""
    x = [np.asarray(a, float)[np.isfinite(np.asarray(a, float))] for a in x]
    y = [np.asarray(b, float)[np.isfinite(np.asarray(b, float))] for b in y]
    point = prob_improvement(x, y)
    if not np.isfinite(point):
        return Estimate(point, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boots = _poi_batch(_resample(x, reps, rng), _resample(y, reps, rng))
    return Estimate(point, *_interval(boots, confidence))


def by_arch(skills: Mapping[str, Mapping[str, np.ndarray]], archs: Sequence[str],
            datasets: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """{arch: [runs' skill on dataset 1, on dataset 2, ...]} in a fixed dataset order."""
    return {a: [np.asarray(skills[ds].get(a, []), float) for ds in datasets] for a in archs}
