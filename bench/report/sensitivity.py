"""The verdict under each alternative analysis choice, so a fragile verdict is seen as such.

Every row recomputes the whole per-dataset analysis and the verdict with one choice changed
from the default; a verdict that differs from the default's is reported as unstable, naming the
choices that change it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from bench.report.analysis import Analysis, DatasetSpec, Options, analyse


def variants(base: Options, unconverged: Collection[str] = ()) -> list[tuple[str, Options]]:
    """The default and each alternative. ``unconverged``: datasets with a cell whose budget
    did not converge; their ranks partly measure convergence speed, so one row asks whether
    the verdict rests on them (no row when every cell converged)."""
    alt_alpha = 0.10 if base.alpha != 0.10 else 0.05
    rows = [
        ("default (as in the verdict)", base),
        ("anchor on the best of all, naive baseline included", base.but(anchor="overall")),
        ("paired t-test by seed", base.but(test="paired")),
        (f"alpha = {alt_alpha:g}", base.but(alpha=alt_alpha)),
        ("no-skill datasets included", base.but(exclude_no_skill=not base.exclude_no_skill)),
        ("ROPE halved", base.but(rope_scale=base.rope_scale / 2)),
        ("ROPE doubled", base.but(rope_scale=base.rope_scale * 2)),
        ("Bayesian decision (out if P(worse by > ROPE) >= 0.95)", base.but(decision="bayes")),
    ]
    if unconverged:
        left = tuple(sorted(unconverged))
        rows.append((f"datasets with an unconverged cell left out ({', '.join(left)})",
                     base.but(leave_out=left)))
    return rows


@dataclass
class Sensitivity:
    rows: list[tuple[str, Analysis]]

    @property
    def baseline(self) -> Analysis:
        return self.rows[0][1]

    @property
    def changers(self) -> list[str]:
        base = self.baseline.verdict.outcome
        return [label for label, a in self.rows[1:] if a.verdict.outcome != base]

    @property
    def stable(self) -> bool:
        return not self.changers


def run(all_specs: Mapping[str, DatasetSpec], base: Options, side: Sequence[str] = (),
        unconverged: Collection[str] = ()) -> Sensitivity:
    return Sensitivity([(label, analyse(all_specs, opts, side))
                        for label, opts in variants(base, unconverged)])
