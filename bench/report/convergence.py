"""Did each cell's budget converge? A verdict on architectures measured before they converge
is a verdict on convergence speed, so the report checks every final run.

A run converged when early stopping ended it (it trained fewer epochs than its budget), or
when its best validation epoch lies before the last ``tail`` fraction of the epochs it trained
(the curve had flattened well before the budget ran out). A cell (dataset x architecture)
converged when at least half of its seeds did. Runs without a per-epoch curve (a record
rebuilt without its store) cannot be judged and are counted as unknown, never as converged.

Before any of that, a run must have fitted its training data: a final training loss at or
above ``FIT_RATIO`` (0.9) of the chance loss (ln K for K classes, the best constant
prediction's loss for regression; :mod:`bench.results.fit`) means the model learned next to
nothing, and an early stop or a flat validation curve then says nothing about convergence.
Such a run did not converge, and a cell where more than half of the seeds that can be judged
did not fit is "did not fit", never "converged".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.results.fit import FIT_RATIO, run_fit

TAIL = 0.2  # the best epoch must come before the last 20% of the epochs trained


@dataclass(frozen=True)
class RunConvergence:
    converged: bool | None  # None: no curve and no early stop to judge by
    reason: str  # "early stop", "best at epoch 12 of 40", "best in the last 20% (38 of 40)", ...
    fitted: bool | None = None  # None: no training loss or chance loss to judge by
    fit_ratio: float = math.nan  # final training loss / chance loss


def _curve(row: pd.Series, metric: str) -> list[float]:
    raw = row.get(f"curve:val/{metric}")
    if not isinstance(raw, str) or not raw:
        return []
    return [float(v) for v in json.loads(raw)]


def _int(value) -> int | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else int(v)


def run_convergence(row: pd.Series, tail: float = TAIL,
                    tuning_budget: int | None = None) -> RunConvergence:
    """Judges one final run from its record row. A run trained for the epochs that fold
    tuning chose (``tag:tuned_epochs``) has no validation curve of its own: it is judged by
    where that epoch, the best of the folds' mean curve, fell in the trials' budget
    (``tuning_budget``), by the same tail rule."""
    fit = run_fit(row)
    if fit.fitted is False:
        return RunConvergence(False, f"did not fit: final training loss {fit.ratio:.2f} x the "
                              "chance loss", False, fit.ratio)
    tuned = _int(row.get("tag:tuned_epochs"))
    if tuned is not None and tuning_budget:
        cut = tuning_budget - max(1, math.ceil(tail * tuning_budget))
        where = f"the folds' best mean epoch {tuned} of {tuning_budget}"
        if tuned <= cut:
            return RunConvergence(True, where, fit.fitted, fit.ratio)
        return RunConvergence(False, f"{where}, in the last {tail:.0%}", fit.fitted, fit.ratio)
    trained = _int(row.get("metric:epochs_trained"))
    budget = _int(row.get("param:trainer.max_epochs"))
    if trained is not None and budget is not None and trained < budget:
        return RunConvergence(True, f"early stop after {trained} of {budget} epochs",
                              fit.fitted, fit.ratio)
    curve = _curve(row, str(row.get("metric")))
    finite = [v for v in curve if math.isfinite(v)]
    if not finite:
        return RunConvergence(None, "no validation curve recorded", fit.fitted, fit.ratio)
    values = np.array([v if math.isfinite(v) else np.nan for v in curve])
    pick = np.nanargmax if row.get("direction") == "maximize" else np.nanargmin
    best = int(pick(values))  # the first best epoch: a later tie is no further progress
    n = len(curve)
    cut = n - max(1, math.ceil(tail * n))
    if best < cut:
        return RunConvergence(True, f"best at epoch {best + 1} of {n}", fit.fitted, fit.ratio)
    return RunConvergence(False, f"best in the last {tail:.0%} (epoch {best + 1} of {n})",
                          fit.fitted, fit.ratio)


def table(runs: pd.DataFrame, tail: float = TAIL,
          trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell: seeds, converged, unknown, the cell's verdict and an example reason,
    then the fit check: seeds that fitted, seeds whose fit is unknown, the cell's fit (None
    when no seed can be judged) and its median ratio of final training loss to chance loss.

    ``runs`` are the record's final rows of the learned models (naive baselines train nothing);
    ``trials``, the tuning trials, give the epoch budget fold-tuned final runs are judged by.
    """
    budgets = tuning_budgets(trials)
    rows = []
    for (ds, arch), g in runs.groupby(["dataset", "arch"], sort=True):
        judged = [run_convergence(r, tail, budgets.get((ds, arch))) for _, r in g.iterrows()]
        known = [j for j in judged if j.converged is not None]
        yes = sum(bool(j.converged) for j in known)
        fit_known = [j for j in judged if j.fitted is not None]
        fits = sum(bool(j.fitted) for j in fit_known)
        cell_fit = None if not fit_known else fits * 2 >= len(fit_known)
        verdict = None if not known else yes * 2 >= len(known)
        if cell_fit is False:
            verdict = False
        example = next((j.reason for j in judged if j.converged is False),
                       judged[0].reason if judged else "")
        ratios = [j.fit_ratio for j in fit_known]
        rows.append({"dataset": ds, "arch": arch, "seeds": len(judged), "converged": yes,
                     "unknown": len(judged) - len(known), "cell_converged": verdict,
                     "example": example, "fitted": fits,
                     "fit_unknown": len(judged) - len(fit_known), "cell_fit": cell_fit,
                     "fit_ratio": float(np.median(ratios)) if ratios else math.nan})
    return pd.DataFrame(rows, columns=COLUMNS)


def tuning_budgets(trials: pd.DataFrame | None) -> dict[tuple[str, str], int]:
    """(dataset, arch) -> the largest epoch budget its tuning trials had."""
    col = "param:trainer.max_epochs"
    if trials is None or not len(trials) or col not in trials.columns:
        return {}
    epochs = pd.to_numeric(trials[col], errors="coerce")
    return {(str(ds), str(arch)): int(v) for (ds, arch), v in
            epochs.groupby([trials["dataset"], trials["arch"]]).max().items() if np.isfinite(v)}


COLUMNS = ["dataset", "arch", "seeds", "converged", "unknown", "cell_converged", "example",
           "fitted", "fit_unknown", "cell_fit", "fit_ratio"]


def summary(cells: pd.DataFrame) -> tuple[int, int, int]:
    """``(converged cells, judged cells, cells that could not be judged)``."""
    known = cells["cell_converged"].map(lambda v: isinstance(v, bool | np.bool_)).astype(bool)
    judged = cells.loc[known]
    return int(judged["cell_converged"].astype(bool).sum()), len(judged), len(cells) - len(judged)


def not_converged(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells judged not converged (those that did not fit included); a cell that could
    not be judged is not among them."""
    if not len(cells):
        return cells
    return cells[cells["cell_converged"].map(lambda v: v is False or v is np.False_)]


def not_fitted(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that did not fit their training data (:data:`FIT_RATIO`)."""
    if not len(cells):
        return cells
    return cells[cells["cell_fit"].map(lambda v: v is False or v is np.False_)]


__all__ = ["FIT_RATIO", "COLUMNS", "RunConvergence", "not_converged", "not_fitted",
           "run_convergence", "summary", "table"]

