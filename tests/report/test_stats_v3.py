"""The across-dataset statistics of the report held against constructed cases with known
answers: the hierarchical model, the two-level bootstrap, planning, the factor model, the
computed headline, the chance reference and interrupted sessions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

from bench.report import bootstrap, comparisons, factors, headline, hierarchical, power, skill
from bench.report.aggregate import iqm_interval as seeds_only_interval
from bench.results.sessions import INTERRUPTED, close_interrupted


def _panel(true_gaps, noise=0.02, seeds_a=5, seeds_b=10, seed=1):
    rng = np.random.default_rng(seed)
    a = [rng.normal(0.5 + g / 2, noise, seeds_a) for g in true_gaps]
    b = [rng.normal(0.5 - g / 2, noise, seeds_b) for g in true_gaps]
    return a, b


# -- hierarchical model ----------------------------------------------------------------------


def test_hierarchical_recovers_a_known_mean_difference():
    gaps = np.random.default_rng(0).normal(0.10, 0.03, 19)
    a, b = _panel(gaps)
    post = hierarchical.compare_many([(a, b)], rope=0.01)[0]
    d_hat = np.array([x.mean() - y.mean() for x, y in zip(a, b, strict=True)])
    se = d_hat.std(ddof=1) / math.sqrt(len(d_hat))
    assert post.low < gaps.mean() < post.high
    assert post.mean == pytest.approx(d_hat.mean(), abs=2 * se)
    assert post.probs.better > 0.99 and post.datasets == 19
    # the interval is about the across-dataset standard error, not the seeds' far smaller one
    assert 2 * 1.5 * se < post.high - post.low < 2 * 3.0 * se


def test_hierarchical_reads_no_difference_as_equivalence_and_is_symmetric():
    a, b = _panel(np.zeros(19), noise=0.002)
    ab, ba = hierarchical.compare_many([(a, b), (b, a)], rope=0.01)
    assert ab.probs.equivalent > 0.95 and ab.probs.decided() == "equivalent"
    assert ab.mean == pytest.approx(-ba.mean, abs=2e-3)


def test_hierarchical_is_undecided_when_datasets_disagree():
    a, b = _panel(np.array([0.3, -0.3] * 5))
    post = hierarchical.compare_many([(a, b)], rope=0.01)[0]
    assert post.probs.decided() == "undecided"
    assert post.low < 0 < post.high


def test_hierarchical_is_robust_to_one_wild_dataset():
    gaps = np.full(15, 0.05)
    gaps[0] = -2.0
    a, b = _panel(gaps, noise=0.005)
    post = hierarchical.compare_many([(a, b)], rope=0.01)[0]
    assert post.mean == pytest.approx(0.05, abs=0.02)    # the mean of the gaps is -0.087
    assert post.probs.better > 0.95


def test_hierarchical_needs_two_datasets():
    a, b = _panel(np.array([0.1]))
    assert hierarchical.compare_many([(a, b)], rope=0.01)[0] is hierarchical.NAN


# -- two-level bootstrap ----------------------------------------------------------------------


def test_every_dataset_weighs_the_same_whatever_its_seed_count():
    ten_ones, five_zeros = np.ones(10), np.zeros(5)
    assert bootstrap.equal_weight_iqm([ten_ones, five_zeros]) == pytest.approx(0.5)
    # pooling the runs, as the seeds-only estimate does, lets the ten-seed dataset win
    assert seeds_only_interval([ten_ones, five_zeros]).value == pytest.approx(7 / 9)


def test_weighted_iqm_with_equal_weights_is_scipys_trimmed_mean():
    x = np.random.default_rng(3).normal(size=(4, 12))
    got = bootstrap.weighted_iqm(x, np.ones_like(x))
    np.testing.assert_allclose(got, trim_mean(x, 0.25, axis=1), atol=1e-12)


def test_datasets_resampled_interval_reflects_the_spread_of_datasets():
    tasks = [np.full(5, m) for m in np.linspace(0, 1, 19)]   # seeds agree, datasets do not
    seeds = seeds_only_interval(tasks)
    both = bootstrap.iqm_interval(tasks)
    assert seeds.low == seeds.high == pytest.approx(0.5)
    assert both.value == pytest.approx(0.5)
    assert both.low < 0.4 and both.high > 0.6


def test_probability_of_improvement_two_level():
    x = [np.full(5, m + 0.1) for m in np.linspace(0, 1, 10)]
    y = [np.full(10, m) for m in np.linspace(0, 1, 10)]
    e = bootstrap.improvement_interval(x, y)
    assert (e.value, e.low, e.high) == (1.0, 1.0, 1.0)
    half = bootstrap.improvement_interval([np.array([1.0, 0.0])] * 4, [np.array([0.5])] * 4)
    assert half.value == pytest.approx(0.5)


# -- planning ---------------------------------------------------------------------------------


def test_datasets_needed_matches_the_paired_t_test_power():
    # effect size 0.5 at alpha 0.05 and 80% power needs 33.4 pairs (Cohen 1988, table 2.4.1)
    assert power.datasets_needed(0.05, 0.1, 0.05) == 34
    assert power.detectable_gap(0.1, 34, 0.05) == pytest.approx(0.0495, abs=1e-3)
    p = power.plan([np.array([0.0, 0.2, -0.2, 0.1, -0.1])] * 3, 0.05)
    assert p is not None and p.pairs == 3 and p.datasets == 5
    assert p.needed_all[0.1] > p.needed[0.1]


# -- factors ----------------------------------------------------------------------------------


def _design(cell_effects, topo_effects, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    level = rng.normal(0.4, 0.2, 19)
    cols = {f"{c}-{t}": level + ce + te + rng.normal(0, noise, 19)
            for c, ce in cell_effects.items() for t, te in topo_effects.items()}
    cols["mlp"] = level
    return pd.DataFrame(cols, index=[f"d{i}" for i in range(19)])


def test_factor_model_finds_the_cell_and_not_the_topology():
    f = factors.fit(_design({"rnn": 0.0, "lstm": 0.1, "gru": 0.12},
                            {"single": 0.0, "stacked": 0.0, "bidirectional": 0.0}))
    assert f is not None and f.rows == 171 and f.datasets == 19
    assert f.test("cell").p < 1e-6 and f.test("topology").p > 0.01
    gru = next(e for e in f.effects if e.level == "gru")
    assert gru.reference == "rnn" and gru.low < 0.12 < gru.high


# -- headline ---------------------------------------------------------------------------------


def test_headline_names_the_credible_differences():
    rng = np.random.default_rng(5)
    level = rng.normal(0.4, 0.1, 12)
    true = {"gru-single": 0.0, "mlp": 0.0, "rnn-single": -0.2}
    runs = {f"d{i}": {a: rng.normal(level[i] + g, 0.01, 5) for a, g in true.items()}
            for i in range(12)}
    means = pd.DataFrame({ds: {a: float(v.mean()) for a, v in d.items()}
                          for ds, d in runs.items()}).T
    pw = pd.DataFrame(1.0, index=means.columns, columns=means.columns)
    pairs = comparisons.compare_all(runs, means, pw, skill.SKILL_ROPE)
    h = headline.compute(comparisons.order_by_mean(means), pairs, None, 12)
    assert h.best is None
    assert set(h.leading) == {"gru-single", "mlp"}
    assert [b.arch for b in h.behind] == ["rnn-single"]
    assert h.behind[0].gap == pytest.approx(0.2, abs=0.02)
    assert h.baseline == "mlp" and h.baseline_beats == ["rnn-single"] and not h.beat_baseline


# -- the classification reference -------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 9, 10])
def test_classes_read_off_the_naive_classifier(k):
    acc = 0.394
    loss = math.log(math.e + k - 1) - acc    # one-hot logits: the naive classifier's loss
    assert skill.classes_from_naive(acc, loss) == k
    assert skill.reference([acc], "accuracy", "maximize", skill.chance(k)) == (1 / k, "chance")


def test_without_chance_the_naive_baseline_is_the_reference():
    assert skill.reference([0.394], "accuracy", "maximize") == (pytest.approx(0.394), "naive")
    assert math.isnan(skill.classes_from_naive(0.5, math.nan))


# -- sessions ---------------------------------------------------------------------------------


def test_a_session_cut_off_is_closed_at_its_last_heartbeat():
    rows = pd.DataFrame([
        {"kind": "session", "run_id": "s1", "status": "RUNNING", "start_ms": 0, "end_ms": None,
         "command": "study --datasets a", "git_sha": "x", "dataset": None},
        {"kind": "final", "run_id": "r1", "status": "FINISHED", "start_ms": 10, "end_ms": 50,
         "command": "", "git_sha": "x", "dataset": "a"},
        {"kind": "final", "run_id": "r2", "status": "FINISHED", "start_ms": 20, "end_ms": 90,
         "command": "", "git_sha": "x", "dataset": "b"},      # another share's run
        {"kind": "session", "run_id": "s2", "status": "FINISHED", "start_ms": 100,
         "end_ms": 200, "command": "study --datasets a", "git_sha": "x", "dataset": None},
        {"kind": "final", "run_id": "r3", "status": "FINISHED", "start_ms": 110, "end_ms": 150,
         "command": "", "git_sha": "x", "dataset": "a"},      # the next session's run
    ])
    out = close_interrupted(rows).set_index("run_id")
    assert out.loc["s1", "status"] == INTERRUPTED and out.loc["s1", "end_ms"] == 50
    assert out.loc["s2", "status"] == "FINISHED" and out.loc["s2", "end_ms"] == 200
    rows.loc[0, "metric:session/heartbeat_ms"] = 70.0
    assert close_interrupted(rows).set_index("run_id").loc["s1", "end_ms"] == 70


def test_a_record_closes_only_sessions_silent_through_a_later_sitting():
    """Written while a study may still run, the record closes a session only when a whole
    later sitting of the same command began after its last beat and ended."""
    rows = pd.DataFrame([
        {"kind": "session", "run_id": "dead", "status": "RUNNING", "start_ms": 0,
         "end_ms": None, "command": "study", "metric:session/heartbeat_ms": 40.0},
        {"kind": "session", "run_id": "later", "status": "KILLED", "start_ms": 100,
         "end_ms": 200, "command": "study", "metric:session/heartbeat_ms": 190.0},
        {"kind": "session", "run_id": "open", "status": "RUNNING", "start_ms": 300,
         "end_ms": None, "command": "study", "metric:session/heartbeat_ms": 350.0},
        {"kind": "session", "run_id": "peer", "status": "FINISHED", "start_ms": 301,
         "end_ms": 400, "command": "study", "metric:session/heartbeat_ms": 399.0},
    ])
    out = close_interrupted(rows, superseded_only=True).set_index("run_id")
    assert out.loc["dead", "status"] == INTERRUPTED and out.loc["dead", "end_ms"] == 40
    # a parallel worker of the last sitting may still be on its last cell: left as recorded
    assert out.loc["open", "status"] == "RUNNING" and pd.isna(out.loc["open", "end_ms"])
    assert close_interrupted(rows).set_index("run_id").loc["open", "status"] == INTERRUPTED
