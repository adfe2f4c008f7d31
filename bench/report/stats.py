"""Statistics behind the report's claims: per-dataset evidence across seeds, ranks across datasets.

The question "is there a single best recurrent model?" is answered in two layers, following
Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7, and
Benavoli et al. (2017), "Time for a change", JMLR 18:

* Per dataset, the repeated seeds of each architecture carry the evidence. The *anchor* is the
  best **candidate** by mean (the naive baseline is a reference, never the anchor: a test against
  a constant is stricter than one against a real competitor, and a baseline that cannot win
  must not decide who is "top"). Every other candidate is compared with the anchor by
  **Welch's unpaired t-test** and the p-values are Holm-adjusted. Why unpaired: a shared seed
  fixes the data order only; parameter shapes and batch sizes differ between architectures,
  so their initialisations differ and the measured seed-wise correlation between
  architectures is about zero. A paired test would spend degrees of freedom on pairs that do
  not exist; it stays selectable (``test="paired"``) for designs where pairs are real.
* A comparison that cannot be made (fewer than two seeds, or no variance at all) is
  *untested*: it neither joins the top group nor counts as significantly worse, and the
  report names it. A p-value of NaN never reads as "not worse".
* Across datasets: see :mod:`bench.report.across`; the Friedman / Nemenyi machinery here is
  the secondary view, with :func:`power_note` stating in numbers what it can detect.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from bench.report import bayes

ALPHA = 0.05
POWER = 0.80
TESTS = ("welch", "paired")
ANCHORS = ("candidate", "overall")
DECISIONS = ("test", "bayes")
BAYES_DECISION = bayes.BAYES_LEVEL   # P(worse by more than the ROPE) that excludes
TEST_NAMES = {"welch": "Welch's unpaired t-test", "paired": "paired t-test where the seed sets "
              "match (Welch otherwise)"}


def better(direction: str) -> float:
    """+1 when larger is better, -1 when smaller is: multiplying by it turns scores into gains."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: {direction!r} is not allowed; expected 'maximize' or 'minimize'")
    return 1.0 if direction == "maximize" else -1.0


def finite(values: Iterable[float]) -> np.ndarray:
    """The finite values only: a NaN score (a diverged run) is missing, not a number."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]


# ---------------------------------------------------------------------------------------------
# One sample: mean and confidence interval
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Student-t interval for the mean over seeds; a single seed gives an unbounded interval
    (NaN) rather than a misleading zero width."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return Interval(n, mean, std, mean - half, mean + half)


# ---------------------------------------------------------------------------------------------
# Tests and multiple comparisons
# ---------------------------------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (statsmodels' ``multipletests``).

    NaN p-values (comparisons that could not be made) stay NaN and do not count towards the
    family size: an untested comparison is not evidence either way.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        # multipletests' Holm branch calls gc.collect(), which walks the whole heap (0.15 s
        # with pandas and matplotlib loaded); frozen objects are skipped, so freeze around it.
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method="holm")[1]
        finally:
            gc.unfreeze()
    return out


def two_sample(
    a: Mapping[int, float], b: Mapping[int, float], test: str = "welch",
    alternative: str = "two-sided", shift: float = 0.0,
) -> tuple[float, str]:
    """p-value for "mean(a) - shift = mean(b)" and the name of the test that ran.

    ``a`` and ``b`` map seed -> score (NaN scores are dropped first). ``test="paired"`` pairs
    identical seed sets and falls back to Welch otherwise, and the name returned says which
    ran. A sample with no variance is a constant (the deterministic naive baseline): against
    it the test is the one-sample t-test. When neither side varies there is no noise to test
    against and the answer is NaN ("no variance"), never a p of 0 or 1.
    """
    if test not in TESTS:
        raise ValueError(f"test: {test!r} is not allowed; expected one of {list(TESTS)}")
    a = {s: float(v) for s, v in a.items() if v is not None and np.isfinite(v)}
    b = {s: float(v) for s, v in b.items() if v is not None and np.isfinite(v)}
    xa = np.array([a[s] for s in sorted(a)]) - shift
    xb = np.array([b[s] for s in sorted(b)])
    if test == "paired" and len(a) >= 2 and sorted(a) == sorted(b):
        d = xa - xb
        if np.ptp(d) == 0:
            return math.nan, "no variance (constant difference)"
        return float(stats.ttest_1samp(d, 0.0, alternative=alternative).pvalue), "paired t"
    if len(xa) < 2 or len(xb) < 2:
        return math.nan, "too few seeds"
    const_a, const_b = np.ptp(xa) == 0, np.ptp(xb) == 0
    if const_a and const_b:
        return math.nan, "no variance"
    if const_b:
        return one_sample(xa, xb[0], alternative), "one-sample t"
    if const_a:
        flip = {"greater": "less", "less": "greater"}.get(alternative, alternative)
        return one_sample(xb, xa[0], flip), "one-sample t"
    return (float(stats.ttest_ind(xa, xb, equal_var=False, alternative=alternative).pvalue),
            "Welch t")


def one_sample(x: Iterable[float], value: float, alternative: str = "two-sided") -> float:
    """p-value of the one-sample t-test of mean(x) against a known constant; NaN with fewer
    than two finite values or none of them different (no variance to test against)."""
    x = finite(x)
    if len(x) < 2 or np.ptp(x) == 0 or not np.isfinite(value):
        return math.nan
    return float(stats.ttest_1samp(x, value, alternative=alternative).pvalue)


def prob_beats(a: Iterable[float], b: Iterable[float], direction: str) -> float:
    """P(A beats B): the fraction of (seed of A, seed of B) pairs in which A's run is better,
    ties counting one half; NaN scores are dropped first.

    This is the probability of superiority (the Mann-Whitney U divided by n_A n_B, also known
    as Vargha-Delaney A): the chance that one freshly seeded run of A scores better than one
    freshly seeded run of B. It answers the practitioner's question directly, needs no
    distributional assumption, and says nothing about significance (that is the test's job).
    """
    xa = finite(a) * better(direction)
    xb = finite(b) * better(direction)
    if len(xa) == 0 or len(xb) == 0:
        return math.nan
    diff = xa[:, None] - xb[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def minimum_detectable_difference(
    sd: float, n: float, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest true difference of means a two-sided two-sample t-test with ``n`` seeds per
    architecture detects with the given power (statsmodels' ``TTestIndPower``), in the
    scores' units: a "not significantly worse" is only informative below this size."""
    if not (np.isfinite(sd) and sd > 0 and n >= 2):
        return math.nan
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0)
    return float(d * sd)


# ---------------------------------------------------------------------------------------------
# Per dataset
# ---------------------------------------------------------------------------------------------


@dataclass
class DatasetComparison:
    """Everything the report says about one dataset; ``table`` is sorted best mean first."""

    dataset: str
    direction: str
    anchor: str                 # the best candidate: every other candidate is compared with it
    best_overall: str           # the best mean of all (may be the naive baseline)
    table: pd.DataFrame
    test: str
    alpha: float
    rope: float = math.nan      # region of practical equivalence, in the scores' units
    reference: float = math.nan   # the no-skill reference score (naive, or R^2 = 0)
    pooled_sd: float = math.nan
    seeds: float = math.nan     # median seeds per candidate
    mde: float = math.nan       # minimum detectable difference at 80% power
    decision: str = "test"

    @property
    def best(self) -> str:
        return self.anchor

    @property
    def top_group(self) -> list[str]:
        return list(self.table.loc[self.table["in_top_group"], "arch"])

    @property
    def significantly_worse(self) -> list[str]:
        return list(self.table.loc[self.table["significantly_worse"], "arch"])

    @property
    def untested(self) -> list[str]:
        t = self.table
        return list(t.loc[t["candidate"] & ~t["in_top_group"] & ~t["significantly_worse"], "arch"])

    @property
    def has_skill(self) -> bool:
        """At least one candidate beats the no-skill reference by more than the ROPE."""
        return bool(self.table["beats_naive"].any())

    @property
    def skilled(self) -> list[str]:
        return list(self.table.loc[self.table["beats_naive"], "arch"])


def _skill(values: np.ndarray, reference: float, direction: str) -> np.ndarray:
    from bench.report.skill import skill_score

    return skill_score(values, reference, direction)


@dataclass(frozen=True)
class Comparison:
    """How one dataset's architectures are compared: every choice the sensitivity table varies
    is one field here, so a variant changes exactly one input.

    ``candidates`` are the architectures that may win (None: every architecture but the naive
    baseline). ``rope`` is the region of practical equivalence in the scores' units and
    ``reference`` the no-skill score a candidate must beat by more than the ROPE to show skill.
    ``decision="bayes"`` replaces the test by Benavoli's rule: a candidate leaves the top group
    when P(worse than the anchor by more than the ROPE) reaches 0.95.
    """

    direction: str
    dataset: str = ""
    value: str = "value"        # the runs' column holding the score
    alpha: float = ALPHA
    test: str = "welch"
    anchor: str = "candidate"
    candidates: Sequence[str] | None = None
    rope: float = math.nan
    reference: float = math.nan
    decision: str = "test"
    min_seeds: int = 2
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name, v, allowed in (("test", self.test, TESTS), ("anchor", self.anchor, ANCHORS),
                                 ("decision", self.decision, DECISIONS)):
            if v not in allowed:
                raise ValueError(f"{name}: {v!r} is not allowed; expected one of {list(allowed)}")
        better(self.direction)


def compare_dataset(runs: pd.DataFrame, how: Comparison) -> DatasetComparison:
    """Leaderboard, anchor, top group, Bayesian probabilities and skill for one dataset.

    ``runs`` has one row per final run with columns ``arch``, ``seed`` and ``how.value``. Ties
    on the mean are broken by name so that the same results always give the same report.
    """
    by_arch = _scores_by_arch(runs, how)
    cands = set(by_arch) - {"naive"} if how.candidates is None else \
        set(how.candidates) & set(by_arch)
    intervals = {arch: t_interval(s.values(), how.confidence) for arch, s in by_arch.items()}
    order = _best_first(intervals, how.direction)
    anchor = _anchor(order, intervals, cands, how)
    others = [a for a in order if a in cands and a != anchor]
    tested = [two_sample(by_arch[anchor], by_arch[a], how.test) for a in others]
    adjusted = dict(zip(others, holm([p for p, _ in tested]), strict=True))
    raw = dict(zip(others, tested, strict=True))
    beats = _beats_reference(by_arch, cands, how)
    rows = []
    for arch in order:
        p_raw, name = raw.get(arch, (math.nan, ""))
        rows.append(_row(arch, by_arch, intervals, anchor, arch in cands, p_raw, name,
                         adjusted.get(arch, math.nan), beats.get(arch, math.nan), how))
    pooled = _pooled_sd([intervals[a] for a in cands if intervals[a].n >= 2])
    seeds = float(np.median([intervals[a].n for a in cands])) if cands else math.nan
    return DatasetComparison(
        how.dataset, how.direction, anchor, order[0], pd.DataFrame(rows), how.test, how.alpha,
        how.rope, how.reference, pooled, seeds,
        minimum_detectable_difference(pooled, seeds, how.alpha), how.decision,
    )


def _scores_by_arch(runs: pd.DataFrame, how: Comparison) -> dict[str, dict[int, float]]:
    """{arch: {seed: score}}; a diverged run (NaN) is missing, but its architecture is listed."""
    by_arch: dict[str, dict[int, float]] = {}
    for arch, seed, v in runs[["arch", "seed", how.value]].itertuples(index=False):
        by_arch.setdefault(str(arch), {})
        if v is not None and np.isfinite(v):
            by_arch[str(arch)][int(seed)] = float(v)
    if not any(by_arch.values()):
        raise ValueError(f"dataset {how.dataset!r}: no finite scores to compare")
    return by_arch


def _best_first(intervals: Mapping[str, Interval], direction: str) -> list[str]:
    """Architectures by mean, best first; no finite mean last, ties by name."""
    sign = better(direction)

    def key(a: str):
        m = intervals[a].mean
        return (not np.isfinite(m), -sign * m if np.isfinite(m) else 0.0, a)

    return sorted(intervals, key=key)


def _anchor(order: list[str], intervals: Mapping[str, Interval], cands: set[str],
            how: Comparison) -> str:
    """The best candidate with enough seeds to be tested against; a candidate with fewer seeds
    only when no candidate has enough."""
    if how.anchor == "overall" and intervals[order[0]].n >= 1:
        return order[0]
    eligible = [a for a in order if a in cands and intervals[a].n >= how.min_seeds]
    return eligible[0] if eligible else next((a for a in order if a in cands), order[0])


def _beats_reference(by_arch: Mapping[str, Mapping[int, float]], cands: set[str],
                     how: Comparison) -> dict[str, float]:
    """Holm-adjusted p of each candidate beating the no-skill reference by more than the ROPE
    (one-sided): skill within the ROPE is no skill."""
    sign = better(how.direction)
    margin = how.rope if np.isfinite(how.rope) else 0.0
    raw = {a: one_sample([sign * v - margin for v in by_arch[a].values()], sign * how.reference,
                         "greater")
           for a in sorted(cands)}
    names = sorted(raw)
    return dict(zip(names, holm([raw[a] for a in names]), strict=True))


def _status(arch: str, anchor: str, is_cand: bool, n: int, p_adj: float, name: str,
            gap_favours_anchor: bool, probs: bayes.Probs, how: Comparison) -> tuple[str, bool, bool]:
    """(status, significantly worse, in the top group): an untested comparison is neither."""
    if arch == anchor:
        return "anchor", False, is_cand
    if not is_cand:
        return "reference", False, False
    if n < how.min_seeds:
        return "too few seeds", False, False
    if how.decision == "bayes":
        if not np.isfinite(probs.worse):
            return "untestable", False, False
        worse = bool(probs.worse >= BAYES_DECISION)
    elif not np.isfinite(p_adj):
        return f"untested ({name})", False, False
    else:
        worse = bool(p_adj < how.alpha and gap_favours_anchor)
    return ("worse" if worse else "top group"), worse, not worse


def _row(arch: str, by_arch: Mapping[str, Mapping[int, float]],
         intervals: Mapping[str, Interval], anchor: str, is_cand: bool, p_raw: float, name: str,
         p_adj: float, p_beats: float, how: Comparison) -> dict:
    """One leaderboard row: the architecture's interval, its comparison with the anchor, the
    Bayesian probabilities and its skill."""
    iv = intervals[arch]
    anchor_vals = list(by_arch[anchor].values())
    gap_favours_anchor = better(how.direction) * (intervals[anchor].mean - iv.mean) > 0
    probs = (bayes.difference_probs(list(by_arch[arch].values()), anchor_vals, how.rope,
                                    how.direction)
             if arch != anchor else bayes.Probs(math.nan, math.nan, math.nan))
    status, worse, top = _status(arch, anchor, is_cand, iv.n, p_adj, name, gap_favours_anchor,
                                 probs, how)
    sk = _skill(np.array(list(by_arch[arch].values()), float), how.reference, how.direction)
    sk_iv = t_interval(sk, how.confidence)
    return {
        "arch": arch, "candidate": is_cand, "n": iv.n, "mean": iv.mean, "std": iv.std,
        "ci_low": iv.low, "ci_high": iv.high,
        "p_vs_best": p_raw, "p_holm": p_adj, "test": name,
        "p_best_beats": math.nan if arch == anchor else prob_beats(
            anchor_vals, by_arch[arch].values(), how.direction),
        "p_better": probs.better, "p_equivalent": probs.equivalent, "p_worse": probs.worse,
        "skill": sk_iv.mean, "skill_low": sk_iv.low, "skill_high": sk_iv.high,
        "p_beats_naive": p_beats,
        "beats_naive": bool(is_cand and np.isfinite(p_beats) and p_beats < how.alpha),
        "status": status, "in_top_group": bool(top), "significantly_worse": bool(worse),
    }


def _pooled_sd(intervals: Sequence[Interval]) -> float:
    """The seed SD pooled over the candidates with at least two seeds (NaN: none has)."""
    if not intervals:
        return math.nan
    return math.sqrt(sum((i.n - 1) * i.std**2 for i in intervals)
                     / sum(i.n - 1 for i in intervals))


def pairwise_prob_beats(
    runs: pd.DataFrame, direction: str, archs: Sequence[str], value: str = "value"
) -> pd.DataFrame:
    """Matrix of P(row beats column) for the listed architectures (NaN scores dropped)."""
    groups = {a: finite(runs.loc[runs["arch"] == a, value]) for a in archs}
    m = pd.DataFrame(np.nan, index=list(archs), columns=list(archs))
    for a in archs:
        for b in archs:
            if a != b:
                m.loc[a, b] = prob_beats(groups[a], groups[b], direction)
    return m


# ---------------------------------------------------------------------------------------------
# Across datasets
# ---------------------------------------------------------------------------------------------


def rank_matrix(scores: pd.DataFrame, directions: Mapping[str, str]) -> pd.DataFrame:
    """Ranks within each dataset (row), 1 = best, ties sharing the average rank."""
    ranks = {}
    for ds, row in scores.iterrows():
        gains = row.to_numpy(float) * better(directions[ds])
        ranks[ds] = stats.rankdata(-gains, method="average")
    return pd.DataFrame.from_dict(ranks, orient="index", columns=scores.columns)


@dataclass(frozen=True)
class Friedman:
    n_datasets: int
    k: int
    average_ranks: pd.Series
    chi2: float
    p_chi2: float
    iman_davenport: float
    p_iman_davenport: float
    df1: int
    df2: int


def friedman_from_ranks(average_ranks: pd.Series, n_datasets: int) -> Friedman:
    """Friedman's chi-square and the Iman-Davenport F, both as in Demšar (2006) eqs. 1-2.

    No tie correction is applied, matching the formulas behind the published critical values
    (scipy's ``friedmanchisquare`` applies one, which is why it is not used here).
    """
    r = average_ranks.to_numpy(float)
    k, n = len(r), int(n_datasets)
    if k < 2 or n < 2:
        raise ValueError(f"Friedman needs at least 2 architectures and 2 datasets; got k={k}, N={n}")
    chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(r**2)) - k * (k + 1) ** 2 / 4)
    chi2 = max(chi2, 0.0)
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi2
    if denom <= 1e-12:
        ff, p_ff = math.inf, 0.0
    else:
        ff = (n - 1) * chi2 / denom
        p_ff = float(stats.f.sf(ff, df1, df2))
    return Friedman(
        n, k, average_ranks, float(chi2), float(stats.chi2.sf(chi2, df1)), float(ff), p_ff, df1, df2
    )


def friedman(ranks: pd.DataFrame) -> Friedman:
    avg = ranks.mean(axis=0)
    return friedman_from_ranks(avg, len(ranks))


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Critical value q_alpha of Demšar's Table 5(a): the studentized range over sqrt(2)."""
    if k < 2:
        raise ValueError(f"the Nemenyi test needs at least 2 architectures; got {k}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_cd(k: int, n_datasets: int, alpha: float = ALPHA) -> float:
    """Critical difference in average rank: CD = q_alpha * sqrt(k (k+1) / (6 N))."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_datasets))


def nemenyi_pvalues(average_ranks: pd.Series, n_datasets: int) -> pd.DataFrame:
    """All-pairs Nemenyi p-values (the same statistic as scikit-posthocs'
    ``posthoc_nemenyi_friedman``, computed from the ranks the report already holds)."""
    r = average_ranks.to_numpy(float)
    k = len(r)
    se = math.sqrt(k * (k + 1) / (6 * n_datasets))
    q = np.abs(r[:, None] - r[None, :]) / se * math.sqrt(2)
    p = stats.studentized_range.sf(q, k, np.inf)
    np.fill_diagonal(p, 1.0)
    return pd.DataFrame(p, index=average_ranks.index, columns=average_ranks.index)


def datasets_needed(k: int, rank_gap: float, alpha: float = ALPHA) -> int:
    """Smallest number of datasets at which an average-rank gap of ``rank_gap`` exceeds CD."""
    q = nemenyi_q(k, alpha)
    return int(math.floor(q**2 * k * (k + 1) / (6 * rank_gap**2))) + 1


@dataclass(frozen=True)
class PowerNote:
    k: int
    n_datasets: int
    cd: float
    max_gap: float              # the largest possible gap in average rank, k - 1
    n_for_one_rank: int         # datasets needed to separate architectures one rank apart
    weak: bool
    alpha: float = ALPHA


def power_note(k: int, n_datasets: int, alpha: float = ALPHA) -> PowerNote:
    """How much the across-dataset test can detect.

    The caveat is raised when the chi-square approximation is outside Demšar's comfort zone
    (N <= 10) or when a one-rank gap would need more datasets than the study has: in either
    case a non-significant Friedman/Nemenyi result is absence of evidence, not evidence of a tie.
    """
    cd = nemenyi_cd(k, n_datasets, alpha)
    n1 = datasets_needed(k, 1.0, alpha)
    weak = n_datasets <= 10 or n1 > n_datasets
    return PowerNote(k, n_datasets, cd, float(k - 1), n1, weak, alpha)


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------


class DatasetGroups(TypedDict):
    """One dataset's part of the verdict: its groups and its anchor (the best candidate)."""

    top_group: list[str]
    significantly_worse: list[str]
    untested: list[str]
    best: str


@dataclass
class Verdict:
    """The answer and the per-dataset groups it rests on; ``decision`` and ``alpha`` are the
    rule that formed the top groups."""

    single_best: str | None
    always_top: list[str]
    per_dataset: dict[str, DatasetGroups] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    decision: str = "test"
    alpha: float = ALPHA

    @property
    def outcome(self) -> tuple:
        """What a sensitivity row compares: two verdicts with the same outcome say the same."""
        return bool(self.datasets), self.single_best, tuple(self.always_top)


def verdict(comparisons: Sequence[DatasetComparison], candidates: Sequence[str] | None = None) -> Verdict:
    """Computes the answer from the per-dataset top groups, so the prose cannot drift from the
    tables.

    An architecture is the single best only if it is in the top group on every dataset and no
    other candidate is; when several are, they are named as jointly undefeated. Architectures
    missing from a dataset, or untested there (too few seeds, no variance), count as not in its
    top group: missing evidence never makes a winner.
    """
    comps = sorted(comparisons, key=lambda c: c.dataset)
    if not comps:
        return Verdict(None, [], {}, [])
    archs = sorted(set(candidates) if candidates is not None else
                   {a for c in comps for a in c.table.loc[c.table["candidate"], "arch"]})
    always = [a for a in archs if all(a in c.top_group for c in comps)]
    per: dict[str, DatasetGroups] = {
        c.dataset: {
            "top_group": [a for a in c.top_group if a in archs],
            "significantly_worse": [a for a in c.significantly_worse if a in archs],
            "untested": [a for a in c.untested if a in archs],
            "best": c.anchor,
        }
        for c in comps
    }
    return Verdict(always[0] if len(always) == 1 else None, always, per,
                   [c.dataset for c in comps], comps[0].decision, comps[0].alpha)
