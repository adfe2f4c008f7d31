"""Skill against the naive baseline, and each dataset's region of practical equivalence (ROPE).

A model that does not beat the naive baseline has no skill on that dataset: its rank among
other skill-less models is noise, so such a dataset is named and left out of the verdict and
of the across-dataset tests. Skill is measured on one scale for every metric, the skill score

    skill = 1 - error / reference error

where the error of a score is ``1 - score`` for metrics that are maximised with a perfect value
of 1 (accuracy, R^2) and the score itself for error metrics (MAE, RMSE). 0 is the reference's
level, 1 a perfect model, negative worse than the reference. For R^2 the reference is the
better of the naive baseline and R^2 = 0 (predicting the test mean): persistence on returns
scores R^2 far below 0, and beating it is not skill.

For classification the reference is chance: the expected accuracy of guessing a label from
the training set's class prior, which on the balanced training sets of the UCR/UEA archive is
1 / K for K classes, and is taken as 1 / K throughout (the record keeps K, not the class
counts). The naive baseline's majority vote is not used: on tied class counts it takes the
first label, and its test accuracy then depends on which label sorts first (ArrowHead's
balanced training set gives it 39.4% on test, where chance is 33.3%).

ROPE convention (the ``rope`` key of ``conf/dataset/<name>.yaml``): a half-width, in the primary
metric's units for metrics that are maximised (accuracy 0.005 = half a point; R^2 0.005), and a
fraction of the naive baseline's error for error metrics (0.01 = 1% of the naive MAE/RMSE, so
the value is unit-free and survives rescaling). A dataset without the key (or ``rope: null``)
gets the default for its direction (:mod:`bench.results.rope`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

# Metrics with a built-in no-skill level: the reference is never below it.
SKILL_FLOOR = {"r2": 0.0}
# The across-dataset ROPE on the skill-score scale: 1% of the reference's error.
SKILL_ROPE = 0.01


def error(values, direction: str):
    """Error of scores: 1 - score for maximised metrics (perfect = 1), the score otherwise."""
    v = np.asarray(values, dtype=float)
    return 1.0 - v if direction == "maximize" else v


def classes_from_naive(accuracy: float, loss: float) -> float:
    """K, the number of classes, from the naive classifier's test accuracy and cross-entropy:
    it emits one-hot logits, so a correct case costs log(e + K - 1) - 1 and a wrong one
    log(e + K - 1), and the mean loss is log(e + K - 1) - accuracy. NaN when either is
    missing or K is not close to a whole number of at least two."""
    if not (np.isfinite(accuracy) and np.isfinite(loss)):
        return math.nan
    k = math.exp(loss + accuracy) - math.e + 1
    return float(round(k)) if abs(k - round(k)) < 1e-3 and round(k) >= 2 else math.nan


def chance(num_classes: float) -> float:
    """Accuracy of guessing from a uniform class prior (the balanced training prior)."""
    return 1.0 / num_classes if np.isfinite(num_classes) and num_classes >= 2 else math.nan


def reference(naive: Iterable[float], metric: str, direction: str,
              chance_level: float = math.nan) -> tuple[float, str]:
    """The no-skill reference score and its name: chance for a classifier (when known), else
    the naive baseline's mean, or the metric's floor (R^2 = 0) when that is better."""
    if np.isfinite(chance_level):
        return float(chance_level), "chance"
    x = np.asarray([v for v in naive if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    naive_mean = float(x.mean()) if len(x) else math.nan
    floor = SKILL_FLOOR.get(metric)
    if floor is not None and (not np.isfinite(naive_mean) or naive_mean < floor):
        return floor, f"{metric} = {floor:g}"
    return naive_mean, "naive"


def skill_score(values, ref: float, direction: str):
    """1 - error / reference error; NaN where the reference has no error (nothing to beat)."""
    e_ref = float(error(ref, direction))
    v = np.asarray(values, dtype=float)
    if not np.isfinite(e_ref) or e_ref <= 0:
        return np.full_like(v, np.nan)
    return 1.0 - error(v, direction) / e_ref


def rope_in_score_units(rope: float, direction: str, ref: float) -> float:
    """The ROPE as a difference of scores: as given when maximising, times the reference's
    error for error metrics."""
    if direction == "maximize":
        return rope
    return rope * abs(ref) if np.isfinite(ref) else math.nan


def rope_in_skill_units(rope: float, direction: str, ref: float) -> float:
    """The same ROPE on the skill-score scale (a score difference over the reference error)."""
    e_ref = float(error(ref, direction))
    if not np.isfinite(e_ref) or e_ref <= 0:
        return math.nan
    return rope_in_score_units(rope, direction, ref) / e_ref
