"""One pass from a study's final runs to per-dataset comparisons, skill and the verdict.

The same function computes the report's verdict and every row of the sensitivity table, so an
alternative choice (anchor, test, alpha, the no-skill rule, the ROPE's width, the datasets left
out) changes exactly one input and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from bench.report import skill, stats
from bench.results.rope import default_rope

NOT_CANDIDATES = ("naive", "classical")   # reference points, never contenders


@dataclass(frozen=True)
class Options:
    alpha: float = stats.ALPHA
    test: str = "welch"                 # welch | paired
    anchor: str = "candidate"           # candidate: the best candidate | overall: the best of all
    exclude_no_skill: bool = True
    rope_scale: float = 1.0
    decision: str = "test"              # test | bayes
    leave_out: tuple[str, ...] = ()     # datasets kept out of the verdict (a sensitivity row)

    def but(self, **changes) -> Options:
        return replace(self, **changes)


@dataclass(frozen=True)
class DatasetSpec:
    dataset: str
    dataset_name: str
    direction: str
    metric: str
    rope: float                # in the dataset's convention (see bench.report.skill)
    rope_source: str
    runs: pd.DataFrame         # arch, seed, value (one tuning seed)
    chance: float = math.nan   # classification: the chance accuracy, the no-skill reference

    @property
    def reference(self) -> tuple[float, str]:
        naive = self.runs.loc[self.runs["arch"] == "naive", "value"]
        return skill.reference(naive, self.metric, self.direction, self.chance)


def _chance(r: pd.DataFrame) -> float:
    """Chance accuracy of a classification dataset: 1 / K, with K recorded (``num_classes``)
    or read off the naive classifier's test accuracy and loss."""
    if str(r.iloc[0].get("task")) != "classification":
        return math.nan
    for col in ("num_classes", "param:dataset.num_classes"):
        if col in r.columns and pd.to_numeric(r[col], errors="coerce").notna().any():
            return skill.chance(float(pd.to_numeric(r[col], errors="coerce").dropna().iloc[0]))
    naive = r[r["arch"] == "naive"]
    cols = ("metric:test/accuracy", "metric:test/loss")
    if naive.empty or not all(c in naive.columns for c in cols):
        return math.nan
    ks = [skill.classes_from_naive(float(a), float(lo))
          for a, lo in naive[list(cols)].itertuples(index=False)]
    ks = [k for k in ks if math.isfinite(k)]
    return skill.chance(ks[0]) if ks else math.nan


def specs(runs: pd.DataFrame) -> dict[str, DatasetSpec]:
    """One spec per dataset from the record's final runs (already one tuning seed)."""
    out = {}
    for ds in sorted(runs["dataset"].unique()):
        r = runs[runs["dataset"] == ds]
        first = r.iloc[0]
        rope = float(first["rope"]) if pd.notna(first.get("rope")) else math.nan
        src = str(first.get("rope_source")) if pd.notna(first.get("rope_source")) else "default rule"
        if not math.isfinite(rope):
            rope, src = default_rope(first["direction"]), "default rule"
        out[ds] = DatasetSpec(ds, str(first["dataset_name"]), str(first["direction"]),
                              str(first["metric"]), rope, src,
                              r[["arch", "seed", "value"]].reset_index(drop=True), _chance(r))
    return out


def compare(spec: DatasetSpec, opts: Options) -> stats.DatasetComparison:
    ref, _ = spec.reference
    rope = skill.rope_in_score_units(spec.rope * opts.rope_scale, spec.direction, ref)
    cands = sorted(set(spec.runs["arch"]) - set(NOT_CANDIDATES))
    return stats.compare_dataset(spec.runs, stats.Comparison(
        spec.direction, dataset=spec.dataset, alpha=opts.alpha, test=opts.test,
        anchor=opts.anchor, candidates=cands, rope=rope, reference=ref, decision=opts.decision,
    ))


@dataclass
class Analysis:
    options: Options
    comparisons: dict[str, stats.DatasetComparison]
    in_verdict: list[str]
    no_skill: list[str]
    side: list[str]
    verdict: stats.Verdict
    candidates: list[str] = field(default_factory=list)


def analyse(all_specs: Mapping[str, DatasetSpec], opts: Options = Options(),
            side: Sequence[str] = ()) -> Analysis:
    comps = {ds: compare(s, opts) for ds, s in all_specs.items()}
    main = [ds for ds in comps if ds not in side]
    no_skill = [ds for ds in main if not comps[ds].has_skill]
    in_verdict = [ds for ds in main if not (opts.exclude_no_skill and ds in no_skill)
                  and ds not in opts.leave_out]
    candidates = sorted({a for ds in in_verdict for a in comps[ds].table.loc[
        comps[ds].table["candidate"], "arch"]})
    v = stats.verdict([comps[ds] for ds in in_verdict], candidates=candidates)
    return Analysis(opts, comps, in_verdict, no_skill, sorted(side), v, candidates)
