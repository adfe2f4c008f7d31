"""How the report writes its numbers, shared by every renderer of a
:class:`~bench.report.model.StudyReport`.

The report's structure carries floats; each renderer turns them into text here, so a README and
any other rendering of the same study show the same digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Units:
    """A dataset's metric and the units its scores are reported in (``""``: the metric's own)."""

    metric: str
    units: str

    @property
    def percent(self) -> bool:
        return self.metric == "accuracy"

    def label(self) -> str:
        if self.percent:
            return "accuracy (%)"
        return f"{self.metric} ({self.units})" if self.units else self.metric

    def fmt(self, x: float) -> str:
        if x is None or not np.isfinite(x):
            return "n/a"
        if self.percent:
            return f"{100 * x:.2f}"
        if self.metric == "r2":
            return f"{x:.3f}"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.4g}"

    def width(self, x: float) -> str:
        """A difference of scores: accuracy gaps read as percentage points, not percents."""
        return f"{100 * x:.2f} points" if self.percent else self.fmt(x)


def p_value(p: float) -> str:
    """A p-value; an empty cell where no test ran."""
    if p is None or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def probability(p: float) -> str:
    """A probability; an empty cell where there is none."""
    return "" if p is None or not np.isfinite(p) else f"{p:.2f}"


def skill(x: float) -> str:
    """A skill score, signed: its sign says which side of the no-skill reference it is on."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3f}"


def seconds(s: float) -> str:
    """A duration in the largest unit that keeps it readable."""
    if not np.isfinite(s):
        return "n/a"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def seed_range(seeds: list[int] | tuple[int, ...]) -> str:
    """A seed set, contiguous ones as a range."""
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{len(seeds)} ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"
