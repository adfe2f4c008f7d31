"""Statistics behind the report's claims: per-dataset evidence across seeds, ranks across datasets.

The question "is there a single best recurrent model?" is answered in two layers, following
Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:

* Per dataset, the repeated seeds of each architecture carry the evidence. The best mean is
  compared with every other architecture by a **paired t-test across seeds** and the p-values
  are Holm-adjusted (the family is the k-1 comparisons with the best). Why paired t and not
  Wilcoxon's signed-rank test: with the default five seeds the smallest two-sided p-value the
  exact signed-rank test can produce is 2/2^5 = 0.0625, so it could never reject at 0.05 and
  every architecture would land in the top group whatever the data. Pairing by seed is valid
  because run ``s`` of every architecture shares the seed of the data order; where the seed
  sets differ the test falls back to Welch's two-sample t-test. Wilcoxon stays selectable
  (``test="wilcoxon"``) for studies with ten or more seeds.
* Across datasets, each dataset is one block: architectures are ranked by their mean, the
  Friedman statistic with the Iman-Davenport F correction tests "all equal", and the Nemenyi
  critical difference says which average-rank gaps are large enough. With few datasets that
  test has little power, which :func:`power_note` states in numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
TESTS = ("t", "wilcoxon")


def better(direction: str) -> float:
    """+1 when larger is better, -1 when smaller is: multiplying by it turns scores into gains."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: {direction!r} is not allowed; expected 'maximize' or 'minimize'")
    return 1.0 if direction == "maximize" else -1.0


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
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
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
# Multiple comparisons
# ---------------------------------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979), written out to avoid a statsmodels dependency.

    NaN p-values (comparisons that could not be made) are left NaN and do not count towards
    the family size.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def paired_or_welch(
    a: Mapping[int, float], b: Mapping[int, float], test: str = "t"
) -> tuple[float, str]:
    """Two-sided p-value for "a and b have the same mean", and the name of the test used.

    ``a`` and ``b`` map seed -> score. Identical seed sets are paired; otherwise the samples
    are compared unpaired (Welch, or Mann-Whitney for ``test="wilcoxon"``). Degenerate cases
    are decided exactly instead of returning NaN: constant, equal differences mean no evidence
    of a difference (p = 1); constant, non-zero differences mean a deterministic gap (p = 0).
    """
    if test not in TESTS:
        raise ValueError(f"test: {test!r} is not allowed; expected one of {list(TESTS)}")
    common = sorted(set(a) & set(b))
    if len(common) >= 2 and len(common) == len(a) == len(b):
        d = np.array([a[s] - b[s] for s in common], dtype=float)
        if np.allclose(d, d[0], rtol=0, atol=1e-12 * max(1.0, float(np.abs(d).max()))):
            return (1.0 if abs(d[0]) <= 1e-12 else 0.0), "paired (constant difference)"
        if test == "t":
            return float(stats.ttest_rel(list(a[s] for s in common), [b[s] for s in common]).pvalue), "paired t"
        if np.all(d == 0):
            return 1.0, "Wilcoxon signed-rank"
        return float(stats.wilcoxon(d, zero_method="zsplit").pvalue), "Wilcoxon signed-rank"
    xa, xb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    if len(xa) < 2 or len(xb) < 2:
        return math.nan, "too few seeds"
    if xa.std() == 0 and xb.std() == 0:
        return (1.0 if xa[0] == xb[0] else 0.0), "unpaired (constant samples)"
    if test == "t":
        return float(stats.ttest_ind(xa, xb, equal_var=False).pvalue), "Welch t"
    return float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue), "Mann-Whitney U"


def prob_beats(a: Iterable[float], b: Iterable[float], direction: str) -> float:
    """P(A beats B): the fraction of (seed of A, seed of B) pairs in which A's run is better,
    ties counting one half.

    This is the probability of superiority (the Mann-Whitney U divided by n_A n_B, also known
    as Vargha-Delaney A): the chance that one freshly seeded run of A scores better than one
    freshly seeded run of B. It answers the practitioner's question directly, needs no
    distributional assumption, and says nothing about significance (that is the test's job).
    """
    xa = np.asarray(list(a), dtype=float) * better(direction)
    xb = np.asarray(list(b), dtype=float) * better(direction)
    if len(xa) == 0 or len(xb) == 0:
        return math.nan
    diff = xa[:, None] - xb[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


# ---------------------------------------------------------------------------------------------
# Per dataset
# ---------------------------------------------------------------------------------------------


@dataclass
class DatasetComparison:
    """Everything the report says about one dataset; ``table`` is sorted best first."""

    dataset: str
    direction: str
    best: str
    table: pd.DataFrame
    test: str
    alpha: float

    @property
    def top_group(self) -> list[str]:
        return list(self.table.loc[self.table["in_top_group"], "arch"])

    @property
    def significantly_worse(self) -> list[str]:
        return list(self.table.loc[self.table["significantly_worse"], "arch"])


def compare_dataset(
    runs: pd.DataFrame,
    direction: str,
    *,
    dataset: str = "",
    value: str = "value",
    alpha: float = ALPHA,
    test: str = "t",
    confidence: float = 0.95,
) -> DatasetComparison:
    """Leaderboard, top group and P(best beats X) for one dataset.

    ``runs`` has one row per final run with columns ``arch``, ``seed`` and ``value``. The best
    architecture is the one with the best mean; ties on the mean are broken by name so that the
    same results always give the same report.
    """
    sign = better(direction)
    by_arch: dict[str, dict[int, float]] = {}
    for arch, seed, v in runs[["arch", "seed", value]].itertuples(index=False):
        if v is not None and np.isfinite(v):
            by_arch.setdefault(str(arch), {})[int(seed)] = float(v)
    if not by_arch:
        raise ValueError(f"dataset {dataset!r}: no finite scores to compare")
    intervals = {arch: t_interval(s.values(), confidence) for arch, s in by_arch.items()}
    order = sorted(by_arch, key=lambda k: (-sign * intervals[k].mean, k))
    best = order[0]
    raw, used = [], []
    for arch in order[1:]:
        p, name = paired_or_welch(by_arch[best], by_arch[arch], test)
        raw.append(p)
        used.append(name)
    adjusted = holm(raw)
    rows = []
    for i, arch in enumerate(order):
        iv = intervals[arch]
        if i == 0:
            p_raw = p_adj = math.nan
            name = ""
        else:
            p_raw, p_adj, name = raw[i - 1], adjusted[i - 1], used[i - 1]
        gap_favours_best = sign * (intervals[best].mean - iv.mean) > 0
        worse = bool(i > 0 and np.isfinite(p_adj) and p_adj < alpha and gap_favours_best)
        rows.append(
            {
                "arch": arch,
                "n": iv.n,
                "mean": iv.mean,
                "std": iv.std,
                "ci_low": iv.low,
                "ci_high": iv.high,
                "p_vs_best": p_raw,
                "p_holm": p_adj,
                "test": name,
                "p_best_beats": math.nan if i == 0 else prob_beats(
                    by_arch[best].values(), by_arch[arch].values(), direction
                ),
                "in_top_group": not worse,
                "significantly_worse": worse,
            }
        )
    return DatasetComparison(dataset, direction, best, pd.DataFrame(rows), test, alpha)


def pairwise_prob_beats(
    runs: pd.DataFrame, direction: str, archs: Sequence[str], value: str = "value"
) -> pd.DataFrame:
    """Matrix of P(row beats column) for the listed architectures."""
    groups = {a: runs.loc[runs["arch"] == a, value].to_numpy(float) for a in archs}
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
    max_gap: float
    n_for_one_rank: int
    weak: bool
    text: str


def power_note(k: int, n_datasets: int, alpha: float = ALPHA) -> PowerNote:
    """States, in numbers, how much the across-dataset test can detect.

    The caveat is raised when the chi-square approximation is outside Demšar's comfort zone
    (N <= 10) or when a one-rank gap would need more datasets than the study has: in either
    case a non-significant Friedman/Nemenyi result is absence of evidence, not evidence of a tie.
    """
    cd = nemenyi_cd(k, n_datasets, alpha)
    n1 = datasets_needed(k, 1.0, alpha)
    weak = n_datasets <= 10 or n1 > n_datasets
    if cd >= k - 1:
        reach = (
            f"no pair of architectures can be separated at all: even one ranked first on every "
            f"dataset against one ranked last everywhere differs by {k - 1} ranks, less than CD"
        )
    else:
        reach = (
            f"only average-rank gaps above {cd:.2f} (of at most {k - 1}) can be declared "
            f"significant; separating architectures one rank apart would take {n1} datasets"
        )
    text = (
        f"With N = {n_datasets} datasets and k = {k} architectures the Nemenyi critical "
        f"difference at alpha = {alpha} is {cd:.2f} ranks: {reach}."
    )
    if weak:
        text += (
            " The across-dataset test has little power here; a non-significant result is not "
            "evidence that the architectures are equivalent. The per-dataset comparisons across "
            "seeds carry the evidence."
        )
    return PowerNote(k, n_datasets, cd, float(k - 1), n1, weak, text)


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    single_best: str | None
    always_top: list[str]
    per_dataset: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    text: str = ""


def verdict(comparisons: Sequence[DatasetComparison], candidates: Sequence[str] | None = None) -> Verdict:
    """Computes the answer from the per-dataset top groups, so the prose cannot drift from the
    tables.

    An architecture is the single best only if it is in the top group on every dataset and no
    other candidate is; when several are, they are named as jointly undefeated. Architectures
    missing from a dataset count as not in its top group there.
    """
    comps = sorted(comparisons, key=lambda c: c.dataset)
    if not comps:
        return Verdict(None, [], {}, "No dataset has final runs: no verdict.")
    archs = sorted(set(candidates) if candidates is not None else
                   {a for c in comps for a in c.table["arch"]})
    always = [a for a in archs if all(a in c.top_group for c in comps)]
    per = {
        c.dataset: {
            "top_group": [a for a in c.top_group if a in archs],
            "significantly_worse": [a for a in c.significantly_worse if a in archs],
            "best": c.best,
        }
        for c in comps
    }
    names = ", ".join(c.dataset for c in comps)
    if len(always) == 1:
        single = always[0]
        text = (
            f"**Single best: `{single}`.** It is in the top group (not significantly worse than "
            f"the best, Holm-adjusted alpha = {comps[0].alpha}) on every dataset ({names}), and "
            "every other architecture is significantly worse than the best on at least one."
        )
    else:
        single = None
        if always:
            text = (
                "**No single best.** " + ", ".join(f"`{a}`" for a in always) + " are each in the top group on every "
                f"dataset ({names}); the study cannot tell them apart."
            )
        else:
            text = (
                "**No single best.** No architecture is in the top group on every dataset "
                f"({names})."
            )
        text += " Per dataset:"
    lines = [text, ""]
    for ds, d in per.items():
        worse = ", ".join(f"`{a}`" for a in d["significantly_worse"]) or "none"
        top = ", ".join(f"`{a}`" for a in d["top_group"]) or "none"
        lines.append(
            f"- {ds}: top group {top} (best mean: `{d['best']}`); significantly worse: {worse}."
        )
    return Verdict(single, always, per, "\n".join(lines))
