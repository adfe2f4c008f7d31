"""The report's first sentence, computed: which differences are credible, and how large.

"Is an architecture in the top group on every dataset?" all but guarantees "no" on a panel of
twenty datasets even when some differences are large and certain, so it cannot be the answer.
The headline states instead what the hierarchical model (:mod:`bench.report.hierarchical`)
resolves across datasets: whether one architecture is credibly better than every other, which
architectures no other is credibly better than (the leading group), which are credibly behind
and by how much, where the non-recurrent MLP stands, and below what gap the panel cannot
resolve anything (:mod:`bench.report.power`). "Credibly": a posterior probability of at least
0.95 beyond the ROPE (Benavoli et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.report import comparisons, power
from bench.report.comparisons import PairComparison

BASELINES = ("mlp",)     # the candidates without recurrence


@dataclass(frozen=True)
class Behind:
    arch: str
    behind: str         # the leading architecture credibly better than it (the largest gap)
    gap: float          # posterior mean skill difference, behind minus arch


@dataclass
class Headline:
    datasets: int
    order: list[str]                        # by mean skill over datasets, best first
    best: str | None                        # credibly better than every other
    leading: list[str]                      # no other credibly better than them
    behind: list[Behind] = field(default_factory=list)
    baseline: str | None = None             # the MLP, when it ran
    baseline_beats: list[str] = field(default_factory=list)   # credibly worse than the baseline
    beat_baseline: list[str] = field(default_factory=list)    # credibly better than the baseline
    planning: power.Planning | None = None


def compute(order: Sequence[str], pairs: Sequence[PairComparison],
            planning: power.Planning | None, datasets: int) -> Headline:
    order = list(order)
    better = {a: [b for b in order if b != a and comparisons.credibly_better(pairs, b, a)]
              for a in order}
    leading = [a for a in order if not better[a]]
    best = next((a for a in order if all(comparisons.credibly_better(pairs, a, b)
                                         for b in order if b != a)), None) \
        if len(order) > 1 else None
    behind = []
    for a in order:
        if better[a]:
            top = max(better[a], key=lambda b: (comparisons.gap(pairs, b, a), b))
            behind.append(Behind(a, top, comparisons.gap(pairs, top, a)))
    base = next((b for b in BASELINES if b in order), None)
    h = Headline(datasets, order, best, leading, behind, base, planning=planning)
    if base is not None:
        h.baseline_beats = [a for a in order if a != base
                            and comparisons.credibly_better(pairs, base, a)]
        h.beat_baseline = [a for a in order if a != base
                           and comparisons.credibly_better(pairs, a, base)]
    return h
