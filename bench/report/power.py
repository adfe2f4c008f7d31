"""How many datasets would resolve a gap in skill: the size of the next panel.

The per-dataset tests have their minimum detectable difference (:mod:`bench.report.stats`);
across datasets the unit of replication is the dataset, and the noise is how much the gap
between two architectures varies from one dataset to the next. With that spread (the standard
deviation of the per-dataset differences of mean skill, the median over all pairs), a paired
two-sided t-test over N datasets detects a gap g at 80% power when N reaches statsmodels'
``TTestPower`` solution for effect size g / SD. The Wilcoxon signed-rank test the report runs
has an asymptotic efficiency of at least 0.864 relative to it (0.955 under normality), so these
are lower bounds for it; the "every pair" column divides alpha by the number of pairs
(Bonferroni, the first step of Holm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestPower

GAPS = (0.05, 0.1, 0.2)
POWER = 0.80
MOST = 100_000      # datasets: the answer is "at least this many" beyond it


@dataclass(frozen=True)
class Planning:
    datasets: int               # datasets in the comparison now
    spread: float               # median SD over pairs of the per-dataset skill differences
    pairs: int
    alpha: float
    detectable: float           # the gap detectable now at 80% power (one comparison)
    needed: dict[float, int]    # gap -> datasets for one comparison
    needed_all: dict[float, int]   # gap -> datasets with alpha / pairs


def datasets_needed(gap: float, sd: float, alpha: float, power: float = POWER) -> int:
    """Datasets a paired two-sided t-test needs to detect ``gap`` with ``power``."""
    if not (np.isfinite(sd) and sd > 0 and gap > 0):
        return 0
    # the power curve over whole numbers of datasets (a root finder fails on huge effects),
    # block by block: power grows with N, so the first block reaching it holds the answer
    start = 2
    for end in (64, 1024, 16_384, MOST):
        n = np.arange(start, end + 1)
        achieved = TTestPower().power(effect_size=gap / sd, nobs=n, alpha=alpha,
                                      alternative="two-sided")
        hit = np.flatnonzero(achieved >= power)
        if len(hit):
            return int(n[hit[0]])
        start = end + 1
    return MOST


def detectable_gap(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    if not (np.isfinite(sd) and sd > 0 and n >= 2):
        return math.nan
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                 alternative="two-sided")
    return float(np.asarray(d).item()) * sd


def plan(differences: Sequence[np.ndarray], alpha: float) -> Planning | None:
    """From each pair's per-dataset differences of mean skill; None with fewer than two
    datasets or no spread."""
    sds = [float(np.std(d[np.isfinite(d)], ddof=1)) for d in differences
           if np.isfinite(d).sum() >= 2]
    sds = [s for s in sds if s > 0]
    if not sds:
        return None
    sd = float(np.median(sds))
    n = int(min(np.isfinite(d).sum() for d in differences))
    pairs = len(differences)
    return Planning(n, sd, pairs, alpha, detectable_gap(sd, n, alpha),
                    {g: datasets_needed(g, sd, alpha) for g in GAPS},
                    {g: datasets_needed(g, sd, alpha / pairs) for g in GAPS})
