"""Skill scores, ROPE conventions, aggregates, across-dataset tests and variance components."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from bench.report import across, aggregate, skill, variance
from bench.results.rope import resolve_rope


def test_skill_score_and_reference():
    # Error metric: 1 - error / naive error.
    assert skill.skill_score([0.5, 1.0], 1.0, "minimize") == pytest.approx([0.5, 0.0])
    # Accuracy: error = 1 - accuracy.
    assert skill.skill_score([0.9], 0.5, "maximize") == pytest.approx([0.8])
    # R^2: the reference is never below 0 (predicting the test mean), so skill = R^2.
    ref, name = skill.reference([-0.9] * 5, "r2", "maximize")
    assert (ref, name) == (0.0, "r2 = 0")
    assert skill.skill_score([-0.01], ref, "maximize") == pytest.approx([-0.01])
    assert skill.reference([0.3, 0.3], "r2", "maximize") == (0.3, "naive")
    assert np.isnan(skill.skill_score([0.5], 1.0, "maximize")).all()   # a perfect reference


def test_rope_convention_and_default_rule():
    assert resolve_rope(None, "maximize") == (0.005, "default")
    assert resolve_rope("null", "minimize") == (0.01, "default")
    assert resolve_rope(0.02, "minimize") == (0.02, "config")
    with pytest.raises(ValueError, match="rope"):
        resolve_rope(-1, "maximize")
    # Error metrics: a fraction of the naive error; maximised metrics: absolute.
    assert skill.rope_in_score_units(0.01, "minimize", 2.8e6) == pytest.approx(2.8e4)
    assert skill.rope_in_score_units(0.005, "maximize", 0.5) == 0.005
    assert skill.rope_in_skill_units(0.01, "minimize", 2.8e6) == pytest.approx(0.01)
    assert skill.rope_in_skill_units(0.005, "maximize", 0.5) == pytest.approx(0.01)


def test_iqm_and_probability_of_improvement():
    assert aggregate.iqm(np.arange(1, 9)) == pytest.approx(4.5)      # mean of 3, 4, 5, 6
    # Task 1: x always wins; task 2: x wins 1 of 4 pairs and ties 2: (1 + 2 * 0.5) / 4.
    x = [np.array([2.0, 3.0]), np.array([1.0, 0.0])]
    y = [np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    assert aggregate.prob_improvement(x, y) == pytest.approx((1.0 + 0.5) / 2)
    est = aggregate.iqm_interval([np.arange(10.0), np.arange(10.0) + 5], reps=500)
    assert est.low <= est.value <= est.high
    assert est == aggregate.iqm_interval([np.arange(10.0), np.arange(10.0) + 5], reps=500)
    poi = aggregate.improvement_interval(x, y, reps=500)
    assert poi.low <= poi.value <= poi.high
    # NaN runs are dropped.
    assert aggregate.iqm(np.array([1.0, np.nan, 3.0])) == pytest.approx(2.0)


def test_wilcoxon_exact_p_holm_and_cliques():
    # Five datasets, every difference positive: exact two-sided p = 2 / 2^5.
    assert across.wilcoxon_p([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(0.0625)
    assert across.smallest_p(5) == pytest.approx(0.0625)
    assert across.wilcoxon_p([1, 2], [1, 2]) == 1.0
    scores = pd.DataFrame({"a": np.arange(8) + 10.0, "b": np.arange(8) + 10.1,
                           "c": np.arange(8) + 0.0})
    pw = across.wilcoxon_holm(scores)
    raw = ss.wilcoxon(scores["a"] - scores["c"]).pvalue
    assert pw.loc["a", "c"] == pytest.approx(min(1.0, 3 * raw))    # smallest of 3: times 3
    ranks = pd.Series({"b": 1.0, "a": 2.0, "c": 3.0})
    fake = pd.DataFrame(1.0, index=list("abc"), columns=list("abc"))
    fake.loc["a", "c"] = fake.loc["c", "a"] = fake.loc["b", "c"] = fake.loc["c", "b"] = 0.01
    assert across.cliques(ranks, fake, 0.05) == [["b", "a"]]
    fake.loc["a", "c"] = fake.loc["c", "a"] = 0.5
    assert across.cliques(ranks, fake, 0.05) == [["b", "a"], ["a", "c"]]


def test_variance_components_known_answers():
    # No tuning effect: identical group means -> var(tuning) = 0.
    g = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])]
    c = variance.components(g)
    assert c.var_tuning == 0.0 and c.var_training == pytest.approx(1.0)
    # Balanced: MS_between = n * var(means); var(tuning) = (MS_b - MS_w) / n.
    g = [np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])]
    c = variance.components(g)
    assert c.var_training == pytest.approx(1.0)
    assert c.var_tuning == pytest.approx((3 * 50.0 - 1.0) / 3)
    assert c.tuning_share == pytest.approx(c.var_tuning / (c.var_tuning + 1.0))
    assert math.isnan(variance.components([np.array([1.0, 2.0])]).var_tuning)
