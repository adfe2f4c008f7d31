"""Bayesian comparisons against baycomp and against answers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from baycomp.single import Posterior
from scipy import stats as ss

from bench.report import bayes


def test_against_a_constant_it_is_baycomps_single_dataset_posterior():
    x = np.array([0.80, 0.81, 0.79, 0.82, 0.80])
    got = bayes.difference_probs(x, [0.8] * 5, rope=0.005)
    d = x - 0.8
    left, rope, right = Posterior(d.mean(), d.var(ddof=1) / len(d), len(d) - 1, 0.005).probs()
    assert (got.worse, got.equivalent, got.better) == pytest.approx((left, rope, right), abs=1e-9)


def test_two_unknown_means_match_monte_carlo():
    a, b = [0.80, 0.81, 0.79, 0.82, 0.80], [0.78, 0.795, 0.77, 0.80, 0.78, 0.79]
    got = bayes.difference_probs(a, b, rope=0.005)
    rng = np.random.default_rng(1)
    n = 400_000

    def draw(x):
        x = np.asarray(x)
        return x.mean() + x.std(ddof=1) / math.sqrt(len(x)) * rng.standard_t(len(x) - 1, n)

    d = draw(a) - draw(b)
    assert got.better == pytest.approx((d > 0.005).mean(), abs=0.004)
    assert got.worse == pytest.approx((d < -0.005).mean(), abs=0.004)
    assert got.better + got.equivalent + got.worse == pytest.approx(1.0)


def test_symmetry_direction_and_degenerate_cases():
    a = [1.0, 1.2, 0.9, 1.1]
    same = bayes.difference_probs(a, a, rope=0.05)
    assert same.better == pytest.approx(same.worse)
    up = bayes.difference_probs([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], 0.0, "maximize")
    down = bayes.difference_probs([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], 0.0, "minimize")
    assert up.better == pytest.approx(down.worse)
    assert bayes.difference_probs([1.0, 1.0], [1.0, 1.0], 0.1) == bayes.Probs(0.0, 1.0, 0.0)
    assert math.isnan(bayes.difference_probs([1.0], [1.0, 2.0], 0.1).better)
    assert bayes.Probs(0.96, 0.04, 0.0).decided() == "better"
    assert bayes.Probs(0.5, 0.3, 0.2).decided() == "undecided"


def test_signed_rank_closed_form_when_every_difference_exceeds_the_rope():
    # Differences all above 2 * rope: with the prior's pseudo-observation at 0 (weight 0.5),
    # the "x better" region holds 1 - w0^2 of the mass and the ROPE w0^2, w0 ~ Beta(0.5, n).
    # "Better" is the most probable region when w0^2 < 1/2: P = Beta(0.5, n).cdf(sqrt(1/2)).
    x, y = np.array([0.5, 0.6, 0.7]), np.array([0.4, 0.5, 0.6])
    got = bayes.signed_rank(x, y, rope=0.01, nsamples=50_000)
    want = ss.beta(0.5, 3).cdf(math.sqrt(0.5))
    assert got.better == pytest.approx(want, abs=0.005)
    assert got.worse == 0.0
    # Identical scores: everything is in the ROPE.
    assert bayes.signed_rank(x, x, rope=0.01, nsamples=2000).equivalent == 1.0
    # Reproducible: a fixed random state.
    assert bayes.signed_rank(x, y, 0.01, nsamples=2000) == bayes.signed_rank(x, y, 0.01, nsamples=2000)
    assert math.isnan(bayes.signed_rank([0.5], [0.4], 0.01).better)
