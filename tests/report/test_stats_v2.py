"""Per-dataset statistics v2 on constructed runs whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report import analysis, markdown, sensitivity, stats

NOISE = [0.0, 0.002, -0.001, 0.001, -0.002]


def _runs(spec: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"arch": a, "seed": s, "value": v} for a, vs in spec.items() for s, v in enumerate(vs)]
    )


def test_anchor_is_the_best_candidate_not_the_naive_baseline():
    # SBUX-like: the constant naive baseline has the best mean; b is close behind it.
    runs = _runs({"naive": [1.00] * 5, "b": [1.01, 1.05, 0.97, 1.02, 1.00],
                  "c": [1.10, 1.30, 0.95, 1.25, 1.20]})
    c = stats.compare_dataset(runs, stats.Comparison("minimize", reference=1.0, rope=0.01))
    assert c.best_overall == "naive" and c.anchor == "b"
    t = c.table.set_index("arch")
    assert t.loc["naive", "status"] == "reference" and not t.loc["naive", "in_top_group"]
    # The old design (anchor on the best of all) compares with a constant: one-sample t.
    old = stats.compare_dataset(runs, stats.Comparison("minimize", anchor="overall", reference=1.0))
    assert old.anchor == "naive"
    assert old.table.set_index("arch").loc["c", "test"] == "one-sample t"
    # No candidate beats the reference by more than the ROPE: no skill.
    assert not c.has_skill and c.skilled == []


def test_skill_and_beats_naive():
    runs = _runs({"gru": [0.90 + e for e in NOISE], "rnn": [0.52 + e for e in NOISE],
                  "naive": [0.5] * 5})
    c = stats.compare_dataset(runs, stats.Comparison("maximize", reference=0.5, rope=0.005))
    t = c.table.set_index("arch")
    # skill = 1 - (1 - acc) / (1 - 0.5): gru 0.8, rnn 0.04
    assert t.loc["gru", "skill"] == pytest.approx(0.8)
    assert t.loc["rnn", "skill"] == pytest.approx(0.04)
    assert bool(t.loc["gru", "beats_naive"]) and bool(t.loc["rnn", "beats_naive"])
    # A margin larger than rnn's gain removes its skill, not gru's.
    c2 = stats.compare_dataset(runs, stats.Comparison("maximize", reference=0.5, rope=0.03))
    assert c2.skilled == ["gru"]


def test_one_surviving_seed_cannot_join_the_top_group_or_win():
    runs = _runs({"gru": [0.95 + e for e in NOISE], "lstm": [0.99]})   # one seed, best mean
    c = stats.compare_dataset(runs, stats.Comparison("maximize"))
    assert c.anchor == "gru"       # an anchor needs at least two seeds
    t = c.table.set_index("arch")
    assert t.loc["lstm", "status"] == "too few seeds"
    assert not t.loc["lstm", "in_top_group"] and not t.loc["lstm", "significantly_worse"]
    assert c.untested == ["lstm"]
    v = stats.verdict([c])
    assert v.single_best == "gru" and "untested" in markdown.verdict_text(v)


def test_nan_scores_are_dropped_not_counted():
    runs = _runs({"gru": [0.95 + e for e in NOISE], "lstm": [0.90, math.nan, math.nan, math.nan, math.nan]})
    c = stats.compare_dataset(runs, stats.Comparison("maximize"))
    t = c.table.set_index("arch")
    assert t.loc["lstm", "n"] == 1 and t.loc["lstm", "status"] == "too few seeds"
    m = stats.pairwise_prob_beats(runs, "maximize", ["gru", "lstm"])
    assert m.loc["gru", "lstm"] == 1.0     # one finite lstm run, beaten by all five


def test_zero_variance_candidates_are_untested():
    runs = _runs({"a": [0.9] * 5, "b": [0.8] * 5})
    c = stats.compare_dataset(runs, stats.Comparison("maximize"))
    t = c.table.set_index("arch")
    assert t.loc["b", "status"].startswith("untested") and math.isnan(t.loc["b", "p_holm"])
    assert c.top_group == ["a"] and c.untested == ["b"]
    # The Bayesian posterior of two constants is a point mass: b is worse for sure.
    assert t.loc["b", "p_worse"] == 1.0


def test_mde_and_rope_are_reported_per_dataset():
    runs = _runs({"a": [0.90 + e for e in NOISE], "b": [0.89 + e for e in NOISE]})
    c = stats.compare_dataset(runs, stats.Comparison("maximize", rope=0.005))
    sd = np.std([0.90 + e for e in NOISE], ddof=1)
    assert c.pooled_sd == pytest.approx(sd)
    assert c.mde == pytest.approx(stats.minimum_detectable_difference(sd, 5))
    assert c.rope == 0.005


def _spec(name, spec, direction="maximize", metric="accuracy", rope=0.005):
    return analysis.DatasetSpec(name, name, direction, metric, rope, "config", _runs(spec))


def test_no_skill_datasets_leave_the_verdict_and_the_sensitivity_table_says_so():
    skilled = {f"d{i}": _spec(f"d{i}", {
        "gru": [0.95 + e for e in NOISE], "lstm": [0.90 + e for e in NOISE], "naive": [0.5] * 5})
        for i in range(2)}
    # R^2 below 0 for everyone: the R^2 = 0 floor is the reference, nobody has skill; there
    # lstm is far better than gru.
    flat = _spec("flat", {"gru": [-0.30 + e for e in NOISE], "lstm": [-0.01 + e for e in NOISE],
                          "naive": [-0.9] * 5}, metric="r2")
    specs = {**skilled, "flat": flat}
    an = analysis.analyse(specs)
    assert an.no_skill == ["flat"] and an.in_verdict == ["d0", "d1"]
    assert an.verdict.single_best == "gru"
    sens = sensitivity.run(specs, analysis.Options())
    rows = dict(sens.rows)
    assert rows["no-skill datasets included"].verdict.single_best is None
    assert not sens.stable and sens.changers == ["no-skill datasets included"]
    assert rows["alpha = 0.1"].verdict.single_best == "gru"


def test_a_verdict_resting_on_an_unconverged_dataset_is_unstable():
    specs = {
        "d0": _spec("d0", {"gru": [0.95 + e for e in NOISE], "lstm": [0.90 + e for e in NOISE],
                           "naive": [0.5] * 5}),
        # lstm wins only where the budget stopped short
        "short": _spec("short", {"gru": [0.80 + e for e in NOISE],
                                 "lstm": [0.90 + e for e in NOISE], "naive": [0.5] * 5}),
    }
    # every cell converged: no row to add
    assert not any("unconverged" in label for label, _ in sensitivity.variants(analysis.Options()))
    sens = sensitivity.run(specs, analysis.Options(), unconverged=["short"])
    label = "datasets with an unconverged cell left out (short)"
    assert sens.baseline.verdict.single_best is None
    rows = dict(sens.rows)
    assert rows[label].in_verdict == ["d0"] and rows[label].verdict.single_best == "gru"
    assert sens.changers == [label]


def test_bayesian_decision_rule_uses_the_rope():
    # b trails a by 0.004 with little noise: inside a ROPE of 0.005, outside one of 0.001.
    a = [0.900 + e / 10 for e in NOISE]
    b = [0.896 + e / 10 for e in NOISE]
    runs = _runs({"a": a, "b": b})
    wide = stats.compare_dataset(runs, stats.Comparison("maximize", rope=0.005, decision="bayes"))
    narrow = stats.compare_dataset(runs, stats.Comparison("maximize", rope=0.001, decision="bayes"))
    assert wide.top_group == ["a", "b"]
    assert narrow.top_group == ["a"] and narrow.significantly_worse == ["b"]
    assert wide.table.set_index("arch").loc["b", "p_equivalent"] > 0.95


@pytest.mark.parametrize("choice", [{"test": "anova"}, {"anchor": "naive"}, {"decision": "vote"}])
def test_a_comparison_refuses_a_choice_it_does_not_know(choice):
    with pytest.raises(ValueError, match="is not allowed"):
        stats.Comparison("maximize", **choice)
