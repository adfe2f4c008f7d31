"""Every pair of architectures across datasets, by every test the report runs.

A verdict that only compares each architecture with the best-ranked one hides the differences
between the others (the MLP against the plain RNNs, say), and which differences are credible
is what a reader needs. For each pair, first ahead of second in mean skill: the hierarchical
Bayesian model on every seed (:mod:`bench.report.hierarchical`), the Bayesian signed-rank test
on the datasets' mean skill (:mod:`bench.report.bayes`), the Holm-adjusted Wilcoxon test
(:mod:`bench.report.across`), and the win / tie / loss count over datasets (a tie: the
datasets' mean skills within the ROPE) with the two-sided sign test on wins against losses.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.report import bayes, hierarchical


@dataclass(frozen=True)
class PairComparison:
    first: str
    second: str
    mean_diff: float            # mean over datasets of first's mean skill minus second's
    hierarchical: hierarchical.Posterior
    signed_rank: bayes.Probs
    wilcoxon_holm: float
    wins: int
    ties: int
    losses: int
    sign_p: float


def order_by_mean(means: pd.DataFrame) -> list[str]:
    """Architectures by mean skill over datasets, best first, ties by name."""
    m = means.mean(axis=0)
    return sorted(means.columns, key=lambda a: (-float(m[a]), a))


def compare_all(runs_skill: Mapping[str, Mapping[str, np.ndarray]], means: pd.DataFrame,
                wilcoxon_holm: pd.DataFrame, rope: float) -> list[PairComparison]:
    """Every pair of the columns of ``means`` (datasets x architectures of mean skill), best
    pairs of the leaders first; ``runs_skill`` holds each run's skill {dataset: {arch: runs}}."""
    order = order_by_mean(means)
    datasets = list(means.index)
    pairs = list(itertools.combinations(order, 2))
    posts = hierarchical.compare_many(
        [([runs_skill[ds][a] for ds in datasets], [runs_skill[ds][b] for ds in datasets])
         for a, b in pairs], rope)
    out = []
    for (a, b), post in zip(pairs, posts, strict=True):
        d = (means[a] - means[b]).to_numpy(float)
        wins, losses = int((d > rope).sum()), int((d < -rope).sum())
        ties = len(d) - wins - losses
        sign = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
        out.append(PairComparison(
            a, b, float(np.mean(d)), post,
            bayes.signed_rank(means[a].to_numpy(), means[b].to_numpy(), rope),
            float(wilcoxon_holm.loc[a, b]), wins, ties, losses, sign))
    return out


def differences(means: pd.DataFrame) -> list[np.ndarray]:
    """Each pair's per-dataset differences of mean skill (for planning the next panel)."""
    return [(means[a] - means[b]).to_numpy(float)
            for a, b in itertools.combinations(sorted(means.columns), 2)]


def find(pairs: Sequence[PairComparison], a: str, b: str) -> tuple[PairComparison, bool] | None:
    """The comparison of ``a`` and ``b`` and whether it is stored the other way round."""
    for p in pairs:
        if (p.first, p.second) == (a, b):
            return p, False
        if (p.first, p.second) == (b, a):
            return p, True
    return None


def credibly_better(pairs: Sequence[PairComparison], a: str, b: str,
                    level: float = bayes.BAYES_LEVEL) -> bool:
    """P(a better than b by more than the ROPE) >= level under the hierarchical model."""
    hit = find(pairs, a, b)
    if hit is None:
        return False
    p, flipped = hit
    prob = p.hierarchical.probs.worse if flipped else p.hierarchical.probs.better
    return bool(np.isfinite(prob) and prob >= level)


def gap(pairs: Sequence[PairComparison], a: str, b: str) -> float:
    """Posterior mean of a's skill minus b's, across datasets."""
    hit = find(pairs, a, b)
    if hit is None:
        return math.nan
    p, flipped = hit
    return -p.hierarchical.mean if flipped else p.hierarchical.mean
