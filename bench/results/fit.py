"""Did a run fit its training data? The fit check of a record row, for old rows too.

A run records its fit (``bench.task``): ``metric:fit/train_loss`` (its last epoch's training
loss), ``metric:fit/chance_loss`` (ln K for K classes; the best constant prediction's loss for
regression and forecasting) and ``metric:fit/loss_ratio``. Rows recorded before the check
existed still carry the training loss (``curve:train/loss``, ``metric:train/loss``); for a
classification dataset whose config states ``classes``, the chance loss ln K is derived from
it, so an old study's report still says which cells did not fit. Anything else is unknown,
never "fitted".
"""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.config import CONF_DIR, load_mapping
from bench.vocab import FIT_RATIO, fitted

__all__ = ["FIT_RATIO", "RunFit", "run_fit"]

CONF_DATASETS = CONF_DIR / "dataset"


class RunFit:
    """One run's fit check: the ratio of its final training loss to the chance loss."""

    def __init__(self, ratio: float, source: str):
        self.ratio, self.source = ratio, source
        self.fitted = fitted(ratio)  # None: unknown


def _float(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _last_train_loss(row: pd.Series) -> float:
    raw = row.get("curve:train/loss")
    if isinstance(raw, str) and raw:
        values = json.loads(raw)
        if values:
            return _float(values[-1])
    return _float(row.get("metric:train/loss"))


def _classes(dataset: object) -> int | None:
    path = CONF_DATASETS / f"{dataset}.yaml"
    if not isinstance(dataset, str) or not path.is_file():
        return None
    k = load_mapping(path).get("classes")
    return int(k) if isinstance(k, int) and k > 1 else None


def run_fit(row: pd.Series) -> RunFit:
    """The fit check of one final run, from what its row recorded."""
    ratio = _float(row.get("metric:fit/loss_ratio"))
    if math.isfinite(ratio):
        return RunFit(ratio, "recorded")
    if row.get("task") != "classification":
        return RunFit(math.nan, "no chance loss recorded")
    k = _classes(row.get("dataset"))
    loss = _last_train_loss(row)
    if k is None or not math.isfinite(loss):
        return RunFit(math.nan, "no training loss or class count recorded")
    return RunFit(loss / math.log(k), f"final training loss / ln {k}")
