"""The convergence check on constructed record rows with known answers."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.report import content, convergence, markdown


def _row(curve, trained=None, budget=10, direction="maximize", ds="d", arch="a"):
    return {"dataset": ds, "arch": arch, "metric": "accuracy", "direction": direction,
            "curve:val/accuracy": json.dumps(curve) if curve is not None else math.nan,
            "metric:epochs_trained": len(curve or []) if trained is None else trained,
            "param:trainer.max_epochs": budget}


def test_run_rules():
    j = convergence.run_convergence
    assert j(pd.Series(_row([0.1] * 6, trained=6))).reason == "early stop after 6 of 10 epochs"
    rising = [i / 10 for i in range(10)]
    assert j(pd.Series(_row(rising))).converged is False  # best at the last epoch
    plateau = [0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    assert j(pd.Series(_row(plateau))).converged is True  # first best at epoch 3 of 10
    late = [0.1] * 8 + [0.2, 0.1]  # best at epoch 9: inside the last 20%
    assert j(pd.Series(_row(late))).converged is False
    falling = [1.0 - i / 10 for i in range(10)]
    assert j(pd.Series(_row(falling, direction="minimize"))).converged is False
    assert j(pd.Series(_row(None, trained=10))).converged is None


def test_cells_need_half_their_seeds_and_unknowns_are_not_converged():
    rising = [i / 10 for i in range(10)]
    flat = [0.9] * 10
    runs = pd.DataFrame([_row(flat, arch="a"), _row(rising, arch="a"),          # 1 of 2: yes
                         _row(rising, arch="b"), _row(rising, arch="b"), _row(flat, arch="b"),
                         _row(None, trained=10, arch="c")])
    cells = convergence.table(runs).set_index("arch")
    assert bool(cells.loc["a", "cell_converged"]) is True
    assert bool(cells.loc["b", "cell_converged"]) is False and cells.loc["b", "converged"] == 1
    assert cells.loc["c", "cell_converged"] is None and cells.loc["c", "unknown"] == 1
    assert convergence.summary(cells.reset_index()) == (1, 2, 1)
    text = markdown.convergence(content.convergence_section(cells.reset_index(), convergence.TAIL))
    assert "**1 of 2 judged cells converged (50%)**" in text and "| d | `b` | 1 of 3 |" in text


def test_a_run_that_did_not_fit_never_counts_as_converged():
    """A flat validation curve with a training loss at chance is "did not fit"; rows recorded
    before the fit metrics derive it from their training curve and the config's classes."""
    flat = [0.9] * 10
    ln3 = math.log(3)
    stuck = {**_row(flat, ds="arrowhead", arch="a"), "task": "classification",
             "curve:train/loss": json.dumps([1.1, 1.099, 0.99 * ln3])}  # old row: derived
    learned = {**_row(flat, ds="arrowhead", arch="b"), "task": "classification",
               "metric:fit/loss_ratio": 0.2}
    recorded = {**_row(flat, ds="arrowhead", arch="a"), "task": "classification",
                "metric:fit/loss_ratio": 0.95}
    j = convergence.run_convergence(pd.Series(stuck))
    assert j.converged is False and j.fitted is False and j.fit_ratio == pytest.approx(0.99)
    assert j.reason.startswith("did not fit")
    unknown = {**_row(flat, ds="nowhere"), "task": "classification",
               "curve:train/loss": json.dumps([1.0])}
    assert convergence.run_convergence(pd.Series(unknown)).fitted is None
    regression = {**_row(flat), "task": "regression", "metric:train/loss": 0.1}
    assert convergence.run_convergence(pd.Series(regression)).fitted is None

    cells = convergence.table(pd.DataFrame([stuck, recorded, learned])).set_index("arch")
    assert not cells.loc["a", "cell_fit"] and not cells.loc["a", "cell_converged"]
    assert bool(cells.loc["b", "cell_fit"]) and bool(cells.loc["b", "cell_converged"])
    assert list(convergence.not_fitted(cells.reset_index())["arch"]) == ["a"]
    section = content.convergence_section(cells.reset_index(), convergence.TAIL)
    text = markdown.convergence(section)
    assert "**1 cell(s) did not fit.**" in text and "| arrowhead | `a` | 0 of 2 | 0.97 |" in text
    assert "Cells whose budget did not converge" not in text
    line = markdown.convergence_line(section)
    assert "did not fit their training data: arrowhead `a`" in line and "not converged:" not in line


def test_fold_tuned_final_runs_are_judged_by_where_the_tuned_epoch_fell():
    """A final run after fold tuning trains the tuned epochs with no validation split: it is
    judged by the folds' best mean epoch against the trials' budget, not called unknown."""
    def final(tuned, arch):
        return {**_row(None, trained=tuned, budget=tuned, arch=arch), "tag:tuned_epochs": tuned}

    runs = pd.DataFrame([final(128, "early"), final(128, "early"), final(290, "late")])
    trials = pd.DataFrame([{"dataset": "d", "arch": a, "param:trainer.max_epochs": 300}
                           for a in ("early", "late")])
    cells = convergence.table(runs, trials=trials).set_index("arch")
    assert bool(cells.loc["early", "cell_converged"]) is True
    assert bool(cells.loc["late", "cell_converged"]) is False
    assert cells.loc["late", "example"] == "the folds' best mean epoch 290 of 300, in the last 20%"
    # without the trials the budget is unknown, and so is the verdict
    assert convergence.table(runs).set_index("arch").loc["early", "cell_converged"] is None
