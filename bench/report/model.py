"""A study's report as data: every number, name, flag and figure path the README shows.

:mod:`bench.report.content` computes a :class:`StudyReport` from the record; a renderer
(:mod:`bench.report.markdown`) words it. The types hold numbers, not formatted text, so that
each rendering of a study shows the same evidence and formats it its own way (with
:mod:`bench.report.formatting` for the digits). Where a statistics type is carried as it is
(a verdict, a Friedman test, a bootstrap estimate, Bayesian probabilities), it is plain data
too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.report import aggregate, bayes, stats
from bench.report import claims as claims_mod
from bench.report.aggregate import Estimate
from bench.report.comparisons import PairComparison
from bench.report.factors import Factors
from bench.report.formatting import Units
from bench.report.headline import Headline


@dataclass(frozen=True)
class Figure:
    """A figure of the report; ``path`` is relative to the report's folder. ``kept``: drawn
    from a store this build does not have, and kept as committed."""

    path: str
    kept: bool = False


@dataclass(frozen=True)
class LeaderboardRow:
    arch: str
    candidate: bool
    anchor: bool
    status: str                 # stats.compare_dataset's status of the row
    n: int
    mean: float
    ci_low: float
    ci_high: float
    params: float               # mean parameter count over the seeds (NaN: not logged)
    epoch_s: float              # mean seconds per epoch (NaN: not logged)
    skill: float
    skill_low: float
    skill_high: float
    beats_naive: bool
    p_beats_naive: float        # Holm-adjusted
    p_holm: float               # against the anchor
    p_anchor_beats: float       # fraction of seed pairs the anchor wins
    p_better: float
    p_equivalent: float
    p_worse: float

    @property
    def no_seed_variance(self) -> bool:
        return self.n >= 2 and bool(np.isfinite(self.ci_low)) and self.ci_low == self.ci_high


@dataclass(frozen=True)
class Rope:
    """The region of practical equivalence and the no-skill reference it is measured from."""

    width: float                # in the scores' units
    setting: float              # as configured: error fraction (minimize) or metric units
    source: str                 # "default rule", "run config", "conf/dataset/<name>.yaml"
    in_skill: float             # the same width in skill units
    reference: float            # the no-skill reference score
    reference_name: str         # "naive", or the reference that replaced it


@dataclass(frozen=True)
class Power:
    """What the per-dataset test can resolve with the seeds it has."""

    mde: float                  # minimum detectable difference at 80% power (NaN: not computable)
    alpha: float
    seeds: float                # median seeds per candidate
    pooled_sd: float
    rope: float


@dataclass(frozen=True)
class TrialCount:
    arch: str
    trials: int
    complete: int
    pruned: int
    failed: int


@dataclass(frozen=True)
class TuningNote:
    """An architecture without an importance estimate: too few complete trials (``error``
    empty), or fANOVA failed with ``error``."""

    arch: str
    error: str = ""


@dataclass
class Tuning:
    counts: list[TrialCount] = field(default_factory=list)
    importance: dict[str, dict[str, float]] = field(default_factory=dict)   # arch -> param -> share
    notes: list[TuningNote] = field(default_factory=list)


@dataclass(frozen=True)
class PairwiseBeats:
    """P(row beats column), the fraction of seed pairs, within a top group of three or more."""

    archs: list[str]
    p: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Predictions:
    """The test-prediction plot of the best learned model's median seed."""

    arch: str
    seed: int
    figure: Figure


@dataclass(frozen=True)
class PublishedScore:
    """A published fold-0 test score on the archive's own split, and how far the study's best
    recurrent cell is from it."""

    method: str
    score: float
    source: str                 # file:line in bench/data/reference/published.csv's source
    gap: float                  # best recurrent mean - score (NaN: no recurrent cell)


@dataclass(frozen=True)
class Published:
    best_recurrent: str         # the recurrent cell with the best mean ("" when none ran)
    best_recurrent_mean: float
    scores: list[PublishedScore]


@dataclass(frozen=True)
class FinalRun:
    """A run the leaderboard counts, by the MLflow run id a reader can look it up with."""

    arch: str
    seed: int
    run_id: str


@dataclass
class DatasetSection:
    dataset: str
    name: str                   # the dataset config's name
    units: Units
    direction: str
    task: str
    role: str                   # "verdict", "side" (a reference claim only) or "no skill"
    test: str                   # stats.TESTS key of the per-dataset test
    n_comparisons: int
    rope: Rope
    power: Power
    leaderboard: list[LeaderboardRow]
    tests_ran: list[str]
    anchor: str
    best_overall: str
    alpha: float
    top_group: list[str]
    significantly_worse: list[str]
    untested: list[str]
    equivalent: list[str]       # P(within the ROPE of the anchor) >= bayes.BAYES_LEVEL
    pairwise: PairwiseBeats | None
    curves: Figure | None
    predictions: Predictions | None
    tuning: Tuning
    runs: list[FinalRun] = field(default_factory=list)   # leaderboard order, then seed
    published: Published | None = None   # an archive dataset with published results


@dataclass(frozen=True)
class RankRow:
    """One architecture's mean skill and rank per dataset, and its average rank."""

    arch: str
    skill: dict[str, float]
    rank: dict[str, float]
    average_rank: float


@dataclass(frozen=True)
class Wilcoxon:
    smallest_p: float           # the smallest p the exact test can give with these datasets
    significant: list[tuple[str, str]]   # (better, worse), Holm-adjusted
    cliques: list[list[str]]


@dataclass(frozen=True)
class SignedRank:
    first: str
    second: str
    probs: bayes.Probs


@dataclass(frozen=True)
class AggregateRow:
    """``iqm`` and ``improvement``: runs resampled within the study's datasets (and pooled,
    so a dataset weighs by its seed count); ``*_datasets``: datasets resampled, then runs within
    them, every dataset weighing the same (:mod:`bench.report.bootstrap`)."""

    arch: str
    iqm: aggregate.Estimate
    improvement: aggregate.Estimate | None     # P(lead beats it); None for the lead itself
    iqm_datasets: aggregate.Estimate | None = None
    improvement_datasets: aggregate.Estimate | None = None


@dataclass(frozen=True)
class FriedmanNemenyi:
    friedman: stats.Friedman
    cd: float
    q: float
    k: int
    n: int
    power: stats.PowerNote


@dataclass
class AcrossSection:
    """The comparison across datasets. ``ranking`` is empty when fewer than two architectures
    ran on every dataset in the verdict (``datasets`` empty: none is in it)."""

    datasets: list[str]
    left_out: list[str]         # for no skill
    alpha: float
    dropped: list[str] = field(default_factory=list)   # not on every dataset
    ranking: list[RankRow] = field(default_factory=list)   # best average rank first
    wilcoxon: Wilcoxon | None = None
    cd_diagram: Figure | None = None
    signed_rank: list[SignedRank] = field(default_factory=list)
    lead: str = ""              # the highest interquartile-mean skill
    aggregate: list[AggregateRow] = field(default_factory=list)   # highest IQM first
    friedman: FriedmanNemenyi | None = None
    pairs: list[PairComparison] = field(default_factory=list)   # every pair, by mean skill
    headline: Headline | None = None
    factors: Factors | None = None

    @property
    def compared(self) -> bool:
        return bool(self.ranking)

    @property
    def lead_iqm(self) -> Estimate:
        return next(r.iqm for r in self.aggregate if r.arch == self.lead)


@dataclass(frozen=True)
class CellConvergence:
    dataset: str
    arch: str
    seeds: int
    converged: int
    unknown: int
    example: str
    fit: bool | None = None  # None: no seed's fit could be judged
    fitted: int = 0  # seeds that fitted their training data
    fit_known: int = 0  # seeds whose fit could be judged
    fit_ratio: float = math.nan  # median final training loss / chance loss


@dataclass
class ConvergenceSection:
    cells: int
    converged: int
    judged: int
    unknown: int
    tail: float
    not_converged: list[CellConvergence]
    fit_ratio: float = 0.9  # a run did not fit at final training loss >= this x chance loss

    @property
    def not_fitted(self) -> list[CellConvergence]:
        return [c for c in self.not_converged if c.fit is False]


@dataclass(frozen=True)
class NoSkill:
    dataset: str
    anchor: str
    mean: float
    reference: float
    skill: float
    units: Units


@dataclass
class Progress:
    """How much of the study definition's plan the record holds."""

    planned: dict[str, int]     # dataset -> final runs planned (cells x seeds)
    recorded: dict[str, int]    # dataset -> final runs recorded

    @property
    def complete(self) -> list[str]:
        return sorted(d for d, n in self.planned.items() if self.recorded.get(d, 0) >= n)

    @property
    def partial(self) -> bool:
        return len(self.complete) < len(self.planned)

    @property
    def done(self) -> int:
        return sum(min(self.recorded.get(d, 0), n) for d, n in self.planned.items())

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    @property
    def started(self) -> list[str]:
        return sorted(d for d in self.planned if 0 < self.recorded.get(d, 0) < self.planned[d])

    @property
    def waiting(self) -> list[str]:
        return sorted(d for d in self.planned if self.recorded.get(d, 0) == 0)


@dataclass(frozen=True)
class SensitivityRow:
    label: str
    datasets: list[str]
    verdict: stats.Verdict
    default: bool


@dataclass
class SensitivitySection:
    rows: list[SensitivityRow]
    changers: list[str]

    @property
    def stable(self) -> bool:
        return not self.changers

    @property
    def baseline(self) -> SensitivityRow:
        return self.rows[0]


@dataclass
class VerdictSection:
    """The verdict with every caveat that bounds it."""

    verdict: stats.Verdict
    progress: Progress | None   # set only while the study is unfinished
    no_skill: list[NoSkill]
    side: list[str]
    test: str
    alpha: float


@dataclass(frozen=True)
class Budget:
    """The tuning budget per cell, as the study definition set it."""

    n_trials: int
    sampler: str
    seed: str
    pruner: str
    repeats: dict[str, list]    # dataset -> sampler seeds, where tuning ran more than once
    overrides: list[str]
    match_params: bool | int | None   # None/False: width tuned; True: budget tuned; else a budget
    folds: str | None = None    # tuning.folds as defined; None: before folds existed (hold-out)


@dataclass(frozen=True)
class SeedSets:
    """The most common seed set, then the others with the datasets that ran them."""

    common: tuple[int, ...]
    others: list[tuple[tuple[int, ...], list[str]]]


@dataclass(frozen=True)
class DatasetRun:
    dataset: str
    units: Units
    direction: str


@dataclass(frozen=True)
class Commit:
    """A commit the study's final runs were made at."""

    sha: str
    runs: int
    first_ms: float
    last_ms: float


@dataclass(frozen=True)
class Interrupted:
    """A session cut off without closing (a kill the process could not catch), with the
    last sign of life the record holds: its last run's end."""

    run_id: str
    start_ms: float
    last_heartbeat_ms: float


@dataclass(frozen=True)
class DatasetCost:
    """What one dataset cost: the run time summed over its runs, each on one core (a grouped
    run counts its share of the group), so runs per hour per core compare across studies
    and machines whatever the number of workers."""

    dataset: str
    finals: int                 # final and baseline runs
    trials: int                 # tuning trials
    final_s: float
    trial_s: float

    @property
    def runs_per_hour(self) -> float:
        total = self.final_s + self.trial_s
        return (self.finals + self.trials) * 3600 / total if total > 0 else math.nan


@dataclass
class WhatWasRun:
    datasets: list[DatasetRun]
    archs: list[str]
    budget: Budget | None       # None: no study session in the store
    seeds: SeedSets | None      # None: no final runs
    hardware: list[str]
    sessions: int
    wall_s: float | None        # the union of the sessions' spans
    at_once: int
    final_runs: int
    trials: int
    compute_s: float | None     # the summed run time of every final, baseline and trial run
    commands: list[str]
    stores: tuple[str, str] | None   # (MLflow URI, Optuna storage), as the last session had them
    record_source: str | None   # where the record came from, when not MLflow
    definition: str
    commits: list[Commit] = field(default_factory=list)
    interrupted: list[Interrupted] = field(default_factory=list)
    costs: list[DatasetCost] = field(default_factory=list)


@dataclass(frozen=True)
class SkippedDataset:
    dataset: str
    reason: str


@dataclass(frozen=True)
class VarianceRow:
    dataset: str
    arch: str
    tuning_seeds: int
    training_seeds: float
    sd_tuning: float
    sd_training: float
    tuning_share: float


@dataclass(frozen=True)
class ClaimRow:
    claim: claims_mod.Claim
    measured: claims_mod.Measured | None    # None when the study did not run the claim's setup


@dataclass(frozen=True)
class HeatCell:
    """One architecture on one dataset, as the heat map shows it."""

    skill: float                # mean skill over seeds
    rank: float                 # among the dataset's candidates by mean skill, 1 = best
    top: bool                   # in the dataset's top group
    converged: bool             # False: the cell's budget ran out before it converged
    fitted: bool = True         # False: the cell did not fit its training data


@dataclass(frozen=True)
class HeatRow:
    dataset: str
    role: str                   # the DatasetSection's role
    cells: dict[str, HeatCell]  # arch -> cell; an architecture not run there is absent


@dataclass
class Heatmap:
    """Every dataset against every candidate at a glance: the verdict's evidence in one
    picture. Columns run best average rank across datasets first, so the eye reads the
    across-dataset order left to right."""

    archs: list[str]
    rows: list[HeatRow]         # one per dataset, in the report's order
    figure: Figure | None


@dataclass
class StudyReport:
    """Everything the report shows, in reading order: the verdict first, the evidence after."""

    study: str
    verdict: VerdictSection
    what_was_run: WhatWasRun
    skipped: list[SkippedDataset]
    datasets: list[DatasetSection]
    convergence: ConvergenceSection
    across: AcrossSection
    sensitivity: SensitivitySection | None
    variance: list[VarianceRow]
    claims: list[ClaimRow]
    heatmap: Heatmap | None = None      # None: no dataset with a candidate
