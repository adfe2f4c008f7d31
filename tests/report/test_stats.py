"""The report's statistics on constructed data whose answers are known by hand or from print."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats as ss

from bench.report import markdown, stats

# Demšar (2006), Table 6: AUC of four C4.5 variants on 14 data sets.
DEMSAR_NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
DEMSAR_AUC = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569],
    [0.954, 0.971, 0.968, 0.967], [0.628, 0.661, 0.654, 0.657],
    [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625],
    [0.775, 0.838, 0.866, 0.875], [1.000, 1.000, 1.000, 1.000],
    [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970],
])
# The average ranks printed in the paper (computed there from unrounded AUCs).
DEMSAR_RANKS = pd.Series([3.143, 2.000, 2.893, 1.964], index=DEMSAR_NAMES)


def test_friedman_and_iman_davenport_reproduce_demsar():
    # Paper, section 3.2.2: chi^2_F = 9.28, F_F = 3.69 with (3, 39) degrees of freedom.
    f = stats.friedman_from_ranks(DEMSAR_RANKS, 14)
    assert f.chi2 == pytest.approx(9.28, abs=0.01)
    assert f.iman_davenport == pytest.approx(3.69, abs=0.01)
    assert (f.df1, f.df2) == (3, 39)
    # F(3, 39) critical value at 0.05 is 2.85 (paper): the test rejects.
    assert ss.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.01)
    assert f.p_iman_davenport < 0.05


def test_rank_matrix_on_the_printed_table():
    scores = pd.DataFrame(DEMSAR_AUC, columns=DEMSAR_NAMES)
    ranks = stats.rank_matrix(scores, dict.fromkeys(scores.index, "maximize"))
    # mushroom (row 9) is a four-way tie: average rank 2.5 for all.
    assert list(ranks.iloc[9]) == [2.5] * 4
    # From the 3-decimal table two ranks differ from the paper's by 1/28 (a known rounding
    # artefact of the printed table); the others match.
    avg = ranks.mean()
    assert avg["C4.5"] == pytest.approx(3.143, abs=1e-3)
    assert avg["C4.5+m"] == pytest.approx(2.000, abs=1e-3)
    f = stats.friedman(ranks)
    assert f.chi2 == pytest.approx(
        12 * 14 / 20 * (np.sum(avg.to_numpy() ** 2) - 4 * 25 / 4)
    )


def test_friedman_matches_scipy_without_ties():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(rng.normal(size=(8, 5)), columns=list("ABCDE"))
    ranks = stats.rank_matrix(scores, dict.fromkeys(scores.index, "maximize"))
    ours = stats.friedman(ranks)
    ref = ss.friedmanchisquare(*[scores[c] for c in scores])
    assert ours.chi2 == pytest.approx(ref.statistic)
    assert ours.p_chi2 == pytest.approx(ref.pvalue)


def test_minimise_direction_flips_ranks():
    scores = pd.DataFrame({"A": [1.0, 1.0], "B": [2.0, 2.0]}, index=["x", "y"])
    r = stats.rank_matrix(scores, {"x": "minimize", "y": "maximize"})
    assert list(r.loc["x"]) == [1.0, 2.0]
    assert list(r.loc["y"]) == [2.0, 1.0]


@pytest.mark.parametrize(
    "k, alpha, q",
    [(2, 0.05, 1.960), (3, 0.05, 2.343), (4, 0.05, 2.569), (5, 0.05, 2.728),
     (6, 0.05, 2.850), (10, 0.05, 3.164), (2, 0.10, 1.645), (4, 0.10, 2.291), (10, 0.10, 2.920)],
)
def test_nemenyi_critical_values_match_demsar_table_5a(k, alpha, q):
    assert stats.nemenyi_q(k, alpha) == pytest.approx(q, abs=1.5e-3)


def test_critical_difference_of_the_paper_example():
    # Paper: CD = 2.569 * sqrt(4*5 / (6*14)) = 1.25 (alpha 0.05) and 1.12 (alpha 0.10).
    assert stats.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=5e-3)
    assert stats.nemenyi_cd(4, 14, alpha=0.10) == pytest.approx(1.12, abs=5e-3)
    # The design note's "about 2.7 ranks" for five architectures on five datasets.
    assert stats.nemenyi_cd(5, 5) == pytest.approx(2.728, abs=2e-3)


def test_nemenyi_pvalues_agree_with_scikit_posthocs_and_cd():
    scores = pd.DataFrame(DEMSAR_AUC, columns=DEMSAR_NAMES)
    ranks = stats.rank_matrix(scores, dict.fromkeys(scores.index, "maximize"))
    ours = stats.nemenyi_pvalues(ranks.mean(), len(ranks))
    theirs = sp.posthoc_nemenyi_friedman(ranks.to_numpy())
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=1e-9)
    cd = stats.nemenyi_cd(4, 14)
    avg = ranks.mean().to_numpy()
    gaps = np.abs(avg[:, None] - avg[None, :])
    np.testing.assert_array_equal(ours.to_numpy() < 0.05, gaps > cd)


def test_power_note_for_few_datasets():
    note = stats.power_note(k=11, n_datasets=4)
    assert note.weak
    assert note.cd == pytest.approx(stats.nemenyi_cd(11, 4))
    assert "not evidence that the architectures are equivalent" in markdown.power_note(note)
    # Demšar's example is far better powered for one-rank gaps.
    assert stats.datasets_needed(4, 1.0) == math.floor(2.569**2 * 20 / 6) + 1 or \
        stats.datasets_needed(4, 1.0) == 23
    assert stats.nemenyi_cd(4, stats.datasets_needed(4, 1.0)) < 1.0
    assert stats.nemenyi_cd(4, stats.datasets_needed(4, 1.0) - 1) >= 1.0
    # Two datasets, many architectures: nothing can be separated.
    assert "no pair of architectures can be separated" in markdown.power_note(stats.power_note(20, 2))


def test_holm_against_hand_computed_values():
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06).
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    out = stats.holm([0.01, math.nan, 0.02])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])


def test_t_interval_matches_the_textbook_formula():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    iv = stats.t_interval(x)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} * s / sqrt(n)
    assert iv.mean == 3.0
    assert iv.half_width == pytest.approx(half)
    assert math.isnan(stats.t_interval([1.0]).half_width)


def test_prob_beats_counts_seed_pairs():
    # 6 of 9 pairs have a > b, 2 ties, 1 loss: (6 + 1) / 9 when maximising.
    assert stats.prob_beats([2, 3, 4], [1, 2, 3], "maximize") == pytest.approx(7 / 9)
    assert stats.prob_beats([2, 3, 4], [1, 2, 3], "minimize") == pytest.approx(2 / 9)
    assert stats.prob_beats([1, 1], [1, 1], "maximize") == 0.5


def test_two_sample_welch_by_default_and_paired_only_when_asked():
    a = {s: 0.9 + 0.001 * s for s in range(5)}
    b = {s: 0.5 + 0.001 * s + 0.0001 * s * s for s in range(5)}
    p, name = stats.two_sample(a, b)
    assert name == "Welch t"
    assert p == pytest.approx(ss.ttest_ind(list(a.values()), list(b.values()),
                                           equal_var=False).pvalue)
    assert stats.two_sample(a, b, "paired")[1] == "paired t"
    # Seed sets differ: the paired option falls back to Welch and says so.
    assert stats.two_sample({0: 1.0, 1: 2.0}, {2: 1.0, 3: 2.5}, "paired")[1] == "Welch t"


def test_two_sample_degenerate_cases_are_untested_not_decided():
    # Both constant: no noise to test against; never p = 0 or 1.
    p, name = stats.two_sample({0: 1.0, 1: 1.0}, {0: 2.0, 1: 2.0})
    assert math.isnan(p) and name == "no variance"
    # A constant difference under pairing: untested as well.
    p, name = stats.two_sample({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5}, "paired")
    assert math.isnan(p) and "constant difference" in name
    # One seed: too few.
    assert stats.two_sample({0: 1.0}, {1: 2.0, 2: 3.0}) == (pytest.approx(math.nan, nan_ok=True),
                                                            "too few seeds")
    # NaN scores are dropped before counting seeds.
    assert stats.two_sample({0: 1.0, 1: math.nan}, {0: 2.0, 1: 3.0})[1] == "too few seeds"
    # Against a constant (the deterministic naive baseline): the one-sample t-test.
    x = [0.8, 0.82, 0.79, 0.81]
    p, name = stats.two_sample(dict(enumerate(x)), dict.fromkeys(range(4), 0.5))
    assert name == "one-sample t" and p == pytest.approx(ss.ttest_1samp(x, 0.5).pvalue)


def test_minimum_detectable_difference_matches_the_normal_approximation():
    # Large n: the t-based answer tends to (z_{1-a/2} + z_{power}) * sd * sqrt(2 / n).
    n, sd = 2000, 1.0
    approx = (ss.norm.ppf(0.975) + ss.norm.ppf(0.8)) * sd * math.sqrt(2 / n)
    assert stats.minimum_detectable_difference(sd, n) == pytest.approx(approx, rel=1e-3)
    # Five seeds: exact noncentral-t solution, larger than the normal approximation.
    five = stats.minimum_detectable_difference(1.0, 5)
    assert five > (ss.norm.ppf(0.975) + ss.norm.ppf(0.8)) * math.sqrt(2 / 5)
    # At that difference the two-sided two-sample t-test has power 0.8 (noncentral t, df 8).
    df, nc, crit = 8, five * math.sqrt(5 / 2), ss.t.ppf(0.975, 8)
    power = ss.nct.sf(crit, df, nc) + ss.nct.cdf(-crit, df, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert math.isnan(stats.minimum_detectable_difference(0.0, 5))
    assert math.isnan(stats.minimum_detectable_difference(1.0, 1))


def _runs(spec: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"arch": a, "seed": s, "value": v} for a, vs in spec.items() for s, v in enumerate(vs)]
    )


def test_compare_dataset_clear_winner_and_tie():
    runs = _runs({
        "gru": [0.980, 0.981, 0.979, 0.982, 0.980],
        "lstm": [0.979, 0.982, 0.980, 0.981, 0.979],   # indistinguishable from gru
        "rnn": [0.90, 0.91, 0.89, 0.905, 0.895],       # clearly worse
    })
    c = stats.compare_dataset(runs, stats.Comparison("maximize", dataset="mnist"))
    assert c.best == "gru"
    assert c.top_group == ["gru", "lstm"]
    assert c.significantly_worse == ["rnn"]
    rnn = c.table.set_index("arch").loc["rnn"]
    assert rnn["p_best_beats"] == 1.0
    assert rnn["p_holm"] < 0.05 and rnn["test"] == "Welch t"


def test_compare_dataset_minimize_orders_low_first():
    runs = _runs({"a": [2.0, 2.1, 2.05], "b": [1.0, 1.1, 1.05], "naive": [3.0, 3.0, 3.0]})
    c = stats.compare_dataset(runs, stats.Comparison("minimize"))
    assert list(c.table["arch"]) == ["b", "a", "naive"]
    assert c.best == "b"


def _comparison(name, spec, direction="maximize"):
    return stats.compare_dataset(_runs(spec), stats.Comparison(direction, dataset=name))


def test_verdict_single_best_when_in_every_top_group():
    noise = [0.0, 0.002, -0.001, 0.001, -0.002]
    comps = [
        _comparison(f"d{i}", {
            "gru": [0.95 + e for e in noise],
            "lstm": [0.90 + e + 0.0003 * j for j, e in enumerate(noise)],
            "rnn": [0.80 + e - 0.0004 * j for j, e in enumerate(noise)],
        })
        for i in range(3)
    ]
    v = stats.verdict(comps)
    assert v.single_best == "gru"
    assert v.always_top == ["gru"]
    assert "Single best: `gru`" in markdown.verdict_text(v)


def test_verdict_no_single_best_when_winners_differ_or_tie():
    noise = [0.0, 0.002, -0.001, 0.001, -0.002]
    d1 = _comparison("d1", {"gru": [0.95 + e for e in noise],
                            "lstm": [0.80 + e * 1.3 for e in noise]})
    d2 = _comparison("d2", {"gru": [0.80 + e * 1.3 for e in noise],
                            "lstm": [0.95 + e for e in noise]})
    v = stats.verdict([d1, d2])
    assert v.single_best is None and v.always_top == []
    assert v.per_dataset["d1"]["significantly_worse"] == ["lstm"]
    assert v.per_dataset["d2"]["significantly_worse"] == ["gru"]
    # Two architectures tied everywhere: jointly undefeated, not a single best.
    t1 = _comparison("d1", {"gru": [0.95 + e for e in noise], "lstm": [0.95 - e for e in noise]})
    v = stats.verdict([t1])
    assert v.single_best is None and v.always_top == ["gru", "lstm"]
    assert "cannot tell them apart" in markdown.verdict_text(v)


def test_verdict_candidates_exclude_baselines():
    noise = [0.0, 0.002, -0.001, 0.001, -0.002]
    d = _comparison("d", {"gru": [0.95 + e for e in noise], "naive": [0.95 - e for e in noise]})
    assert stats.verdict([d], candidates=["gru"]).single_best == "gru"
