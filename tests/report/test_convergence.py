"""The convergence check on constructed record rows with known answers."""

from __future__ import annotations

import json
import math

import pandas as pd

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
