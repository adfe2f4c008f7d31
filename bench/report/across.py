"""Across datasets: pairwise Wilcoxon signed-rank tests with Holm correction, and cliques.

Benavoli, Corani and Mangili (2016), "Should we really use post-hoc tests based on mean-ranks?"
(JMLR 17), showed that the Nemenyi test's verdict on two algorithms depends on which *other*
algorithms are in the comparison; pairwise Wilcoxon signed-rank tests on the per-dataset scores,
Holm-corrected, do not, and are now the practice in time-series benchmarking (the cliques of
the critical-difference diagram join architectures that no test separates). Scores are each
dataset's mean skill score per architecture, so that differences are comparable across datasets.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.stats import holm


def wilcoxon_p(x, y) -> float:
    """Two-sided Wilcoxon signed-rank p over datasets (exact for small samples); 1 when every
    difference is zero (nothing to rank), NaN with no complete pair."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def smallest_p(n_datasets: int) -> float:
    """The smallest two-sided p the exact signed-rank test reaches with n datasets: 2 / 2^n."""
    return min(1.0, 2.0 / 2**n_datasets) if n_datasets > 0 else math.nan


def wilcoxon_holm(scores: pd.DataFrame) -> pd.DataFrame:
    """All-pairs Holm-adjusted Wilcoxon p-values; ``scores`` is datasets x architectures."""
    archs = list(scores.columns)
    pairs = list(itertools.combinations(archs, 2))
    raw = [wilcoxon_p(scores[a], scores[b]) for a, b in pairs]
    adj = holm(raw)
    out = pd.DataFrame(1.0, index=archs, columns=archs)
    for (a, b), p in zip(pairs, adj, strict=True):
        out.loc[a, b] = out.loc[b, a] = p
    return out


def cliques(average_ranks: pd.Series, pvalues: pd.DataFrame, alpha: float) -> list[list[str]]:
    """Maximal runs of architectures, consecutive in average rank, of which no pair differs
    significantly: the bars of a critical-difference diagram."""
    order = list(average_ranks.iloc[np.lexsort((np.array(average_ranks.index, dtype=str),
                                                average_ranks.to_numpy(float)))].index)
    found: list[list[str]] = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(
            pvalues.loc[a, order[j + 1]] >= alpha for a in order[i:j + 1]
        ):
            j += 1
        group = order[i:j + 1]
        if len(group) > 1 and not any(set(group) <= set(g) for g in found):
            found.append(group)
    return found
