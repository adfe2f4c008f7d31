"""How much of the spread comes from tuning, and how much from the training seed.

Bouthillier et al. (2021), "Accounting for variance in machine learning benchmarks" (MLSys),
found that the choice of hyperparameters by a seeded search is a source of variance as large as
the training seed's, and that benchmarks measuring only the latter overstate their certainty.
When a study repeats the tuning with several sampler seeds (``tuning_seeds`` in the study
definition), each (architecture, tuning seed) is a group of training seeds, and the one-way
random-effects decomposition splits the variance of a score:

    var(training seed) = MS_within
    var(tuning)        = max(0, (MS_between - MS_within) / n0)

with n0 the (adjusted) group size, as in the classical ANOVA estimator of variance components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Components:
    tuning_seeds: int
    training_seeds: float
    var_tuning: float
    var_training: float

    @property
    def tuning_share(self) -> float:
        total = self.var_tuning + self.var_training
        return self.var_tuning / total if total > 0 else math.nan


def components(groups: list[np.ndarray]) -> Components:
    """Variance components of a one-way random-effects model (unbalanced groups allowed)."""
    groups = [np.asarray(g, float)[np.isfinite(np.asarray(g, float))] for g in groups]
    groups = [g for g in groups if len(g)]
    k = len(groups)
    n = np.array([len(g) for g in groups], float)
    total_n = n.sum()
    if k < 2 or total_n - k < 1:
        return Components(k, float(n.mean()) if k else math.nan, math.nan, math.nan)
    grand = np.concatenate(groups).mean()
    ss_between = float(sum(len(g) * (g.mean() - grand) ** 2 for g in groups))
    ss_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    ms_between = ss_between / (k - 1)
    ms_within = ss_within / (total_n - k)
    n0 = (total_n - (n**2).sum() / total_n) / (k - 1)
    var_tuning = max(0.0, (ms_between - ms_within) / n0)
    return Components(k, float(n.mean()), var_tuning, ms_within)


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, architecture) tuned with more than one sampler seed."""
    rows = []
    tuned = runs.dropna(subset=["tuning_seed"])
    for (ds, arch), g in tuned.groupby(["dataset", "arch"], sort=True):
        if g["tuning_seed"].nunique() < 2:
            continue
        c = components([s["value"].to_numpy(float) for _, s in g.groupby("tuning_seed", sort=True)])
        rows.append({"dataset": ds, "arch": arch, "tuning_seeds": c.tuning_seeds,
                     "training_seeds": c.training_seeds, "sd_tuning": math.sqrt(c.var_tuning)
                     if np.isfinite(c.var_tuning) else math.nan,
                     "sd_training": math.sqrt(c.var_training) if np.isfinite(c.var_training)
                     else math.nan, "tuning_share": c.tuning_share})
    return pd.DataFrame(rows)
