"""Does the cell matter (RNN / LSTM / GRU), does the topology (single / stacked /
bidirectional)? A linear mixed model of skill answers both at once.

The nine recurrent architectures are a 3 x 3 design, so the comparison of 36 pairs can be
read as two factors: mean skill of architecture (cell c, topology t) on dataset d is

    skill_dct = intercept + cell_c + topology_t + u_d + e_dct,   u_d ~ Normal(0, s_d^2)

with the dataset as a random intercept (datasets differ in how much skill is possible) and
statsmodels' ``MixedLM`` fitting it. The unit is the dataset's mean over seeds, not the seed:
seeds of one cell on one dataset share its tuned configuration, so treating them as independent
replicates would shrink the intervals. Each factor is tested by a likelihood-ratio test of the
model without it (both fitted by maximum likelihood), and its effects come with 95% Wald
intervals against the reference level (the RNN cell, the single layer).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CELLS = ("rnn", "lstm", "gru")
TOPOLOGIES = ("single", "stacked", "bidirectional")


@dataclass(frozen=True)
class Effect:
    factor: str         # "cell" or "topology"
    level: str
    reference: str
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class FactorTest:
    factor: str
    chi2: float
    df: int
    p: float


@dataclass
class Factors:
    datasets: int
    rows: int
    effects: list[Effect]
    tests: list[FactorTest]
    dataset_sd: float
    residual_sd: float

    def test(self, factor: str) -> FactorTest:
        return next(t for t in self.tests if t.factor == factor)


def _split(arch: str) -> tuple[str, str] | None:
    parts = arch.split("-", 1)
    if len(parts) == 2 and parts[0] in CELLS and parts[1] in TOPOLOGIES:
        return parts[0], parts[1]
    return None


def fit(means: pd.DataFrame) -> Factors | None:
    """From a datasets x architectures table of mean skill; None without at least two levels
    of both factors, or two datasets, or when the fit fails."""
    import statsmodels.formula.api as smf

    rows = [(ds, *cell_topo, float(means.loc[ds, a])) for a in means.columns
            if (cell_topo := _split(a)) is not None for ds in means.index
            if np.isfinite(means.loc[ds, a])]
    df = pd.DataFrame(rows, columns=["dataset", "cell", "topology", "skill"])
    if df.empty or df["cell"].nunique() < 2 or df["topology"].nunique() < 2 \
            or df["dataset"].nunique() < 2:
        return None
    ref_c = next(c for c in CELLS if c in set(df["cell"]))
    ref_t = next(t for t in TOPOLOGIES if t in set(df["topology"]))
    cell = f"C(cell, Treatment('{ref_c}'))"
    topo = f"C(topology, Treatment('{ref_t}'))"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            full = smf.mixedlm(f"skill ~ {cell} + {topo}", df, groups=df["dataset"]).fit(
                reml=False)
            no_cell = smf.mixedlm(f"skill ~ {topo}", df, groups=df["dataset"]).fit(reml=False)
            no_topo = smf.mixedlm(f"skill ~ {cell}", df, groups=df["dataset"]).fit(reml=False)
        except (ValueError, np.linalg.LinAlgError):
            return None
    ci = full.conf_int()
    effects = []
    for name in full.fe_params.index:
        for factor, ref, prefix in (("cell", ref_c, cell), ("topology", ref_t, topo)):
            if name.startswith(prefix):
                level = name[len(prefix):].strip("[]").removeprefix("T.")
                effects.append(Effect(factor, level, ref, float(full.fe_params[name]),
                                      float(ci.loc[name, 0]), float(ci.loc[name, 1])))
    tests = []
    for factor, reduced, levels in (("cell", no_cell, df["cell"].nunique()),
                                    ("topology", no_topo, df["topology"].nunique())):
        chi2 = max(0.0, 2 * (float(full.llf) - float(reduced.llf)))
        tests.append(FactorTest(factor, chi2, levels - 1, float(stats.chi2.sf(chi2, levels - 1))))
    return Factors(int(df["dataset"].nunique()), len(df), effects, tests,
                   math.sqrt(max(0.0, float(full.cov_re.iloc[0, 0]))),
                   math.sqrt(float(full.scale)))
