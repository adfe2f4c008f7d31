"""Classical baselines: what a recurrent network must beat to be worth training.

Two methods, chosen by the dataset's kind, both deterministic and untuned:

* archive sets (a case is a whole series): 1-nearest-neighbour under dynamic time warping
  with a full warping window, the archive's standard floor (1NN-DTW in the bake-off tables),
  over every case of the TRAIN file (the study's validation hold-out is part of TRAIN and a
  method without tuning has no use for it); a regression set takes its neighbour's target;
* forecasting series: exponential smoothing (statsmodels' ETS, additive error), its trend
  and season chosen by AICc among a few forms, fitted on every row before the test split and
  then run over the whole series with the fitted parameters, so each prediction is a
  one-step-ahead forecast from all rows before its target.

The predictions are handed back per case or per target row; :mod:`bench.classical` scores
them with the models' metric code.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import ConfigError

DTW = "1NN-DTW (full window)"


def _tslearn():
    """tslearn, imported without its notice that h5py (for its own file format, unused here)
    is missing."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="h5py not installed")
        import tslearn.neighbors
        import tslearn.utils
    return tslearn


def _cases(x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Cases as tslearn holds them: ``(n, T, d)``, an unequal case padded with NaN (which its
    DTW reads as the end of the series), never with the loader's zeros."""
    to_time_series_dataset = _tslearn().utils.to_time_series_dataset

    if x.ndim == 2:
        x = x[:, :, None]
    if lengths is None:
        return x.astype(np.float64)
    return to_time_series_dataset([c[: int(n)] for c, n in zip(x, lengths, strict=True)])


def nearest_neighbour_dtw(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *,
                          classification: bool, train_lengths: np.ndarray | None = None,
                          test_lengths: np.ndarray | None = None) -> np.ndarray:
    """The label (or target) of each test case's nearest training case under full-window DTW."""
    neighbors = _tslearn().neighbors
    cls = (neighbors.KNeighborsTimeSeriesClassifier if classification
           else neighbors.KNeighborsTimeSeriesRegressor)
    knn = cls(n_neighbors=1, metric="dtw")
    knn.fit(_cases(train_x, train_lengths), train_y)
    return np.asarray(knn.predict(_cases(test_x, test_lengths)))


@dataclass(frozen=True)
class Smoothing:
    """The ETS form AICc chose, and the one-step-ahead forecast of every row it reached."""

    form: str                   # e.g. "ETS(A,Ad,A) m=12"
    aicc: float
    forecasts: np.ndarray       # forecasts[t]: row t from rows < t (t >= 1)


def _forms(season: int | None, n: int) -> list[dict[str, Any]]:
    trends: list[dict[str, Any]] = [dict(trend=None), dict(trend="add", damped_trend=True)]
    seasonal: list[dict[str, Any]] = [dict(seasonal=None)]
    # a season needs two whole cycles to estimate its initial state
    if season and n >= 2 * season + 2:
        seasonal.append(dict(seasonal="add", seasonal_periods=season))
    return [{**t, **s} for t in trends for s in seasonal]


def _name(form: dict) -> str:
    trend = {None: "N", "add": "Ad" if form.get("damped_trend") else "A"}[form.get("trend")]
    season = "A" if form.get("seasonal") else "N"
    m = f" m={form['seasonal_periods']}" if form.get("seasonal") else ""
    return f"ETS(A,{trend},{season}){m}"


def exponential_smoothing(series: np.ndarray, fit_rows: int,
                          season: int | None = None) -> Smoothing:
    """Fits each ETS form on ``series[:fit_rows]``, keeps the lowest AICc and runs it over the
    whole series with those parameters: the test rows inform no parameter, only the state."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(series, dtype=np.float64)
    if fit_rows < 10 or not np.isfinite(y).all():
        raise ConfigError(f"exponential smoothing needs at least 10 finite rows before the test "
                          f"split; got {fit_rows} rows, finite: {bool(np.isfinite(y).all())}")
    best = None
    for form in _forms(season, fit_rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # convergence chatter of the optimiser
            try:
                fitted = ETSModel(y[:fit_rows], error="add", **form).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if math.isfinite(fitted.aicc) and (best is None or fitted.aicc < best[1].aicc):
            best = (form, fitted)
    if best is None:
        raise ConfigError("exponential smoothing: no ETS form could be fitted on the "
                          f"{fit_rows} rows before the test split")
    form, fitted = best
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ETSModel(y, error="add", **form).smooth(fitted.params)
    return Smoothing(_name(form), float(fitted.aicc), np.asarray(run.fittedvalues))
