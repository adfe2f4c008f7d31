"""Published results on the archive's own TRAIN/TEST split, beside this project's numbers.

A leaderboard of recurrent cells says which cell won, not whether any of them learned what the
dataset allows: 1NN-DTW is the floor a learned model should reach, ROCKET, ResNet and
InceptionTime what well-trained models reach on the same split. The rows come from
``bench/data/reference/published.csv`` (its header names the papers, files and lines they were
copied from); they ship with the package so a report built anywhere shows the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pandas as pd

from bench.errors import DataError
from bench.report.model import LeaderboardRow, Published, PublishedScore
from bench.vocab import is_recurrent

COLUMNS = ("dataset", "task", "metric", "method", "fold0", "source_file", "source_line")
METHODS = ("1NN-DTW", "ROCKET", "ResNet", "InceptionTime")   # the order the report shows
METRIC_OF_TASK = {"classification": "accuracy", "regression": "rmse"}


def default_path() -> Path:
    # beside the package's own files, found from this module: asking importlib.resources for
    # ``bench.data`` would import that package, and with it torch, to read a CSV
    return Path(__file__).resolve().parents[1] / "data" / "reference" / "published.csv"


def read(path: str | Path | None = None) -> pd.DataFrame:
    """The table, checked: a wrong column, method, metric or score names the file and line."""
    p = Path(path) if path is not None else default_path()
    try:
        df = pd.read_csv(p, comment="#", dtype={"fold0": str, "source_line": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{p}: not a readable CSV of published results ({exc}); expected "
                        f"the columns {', '.join(COLUMNS)}") from None
    if tuple(df.columns) != COLUMNS:
        raise DataError(f"{p}: columns {list(df.columns)}; expected {list(COLUMNS)}")
    # the line in the file: the header comments and the column names come before the rows
    first = 1 + sum(1 for line in p.read_text().splitlines()
                    if line.startswith("#") or not line.strip()) + 1
    for i, row in enumerate(df.itertuples(index=False)):
        where = f"{p}, line {first + i}"
        if row.method not in METHODS:
            raise DataError(f"{where}: method {row.method!r}; expected one of {list(METHODS)}")
        if METRIC_OF_TASK.get(row.task) != row.metric:
            raise DataError(f"{where}: task {row.task!r} with metric {row.metric!r}; expected "
                            "classification with accuracy or regression with rmse")
        try:
            value = float(row.fold0)
        except (TypeError, ValueError):
            value = math.nan
        bad = not math.isfinite(value) or value < 0 or (row.metric == "accuracy" and value > 1)
        if bad:
            raise DataError(f"{where}: fold0 {row.fold0!r}; expected a finite score "
                            "(accuracy in [0, 1], rmse >= 0)")
        if not str(row.source_line).isdigit():
            raise DataError(f"{where}: source_line {row.source_line!r}; expected the line "
                            f"number in {row.source_file}")
    if df.duplicated(["dataset", "method"]).any():
        d = df[df.duplicated(["dataset", "method"])].iloc[0]
        raise DataError(f"{p}: {d['dataset']} / {d['method']} listed twice; expected one "
                        "fold-0 score per dataset and method")
    df["fold0"] = df["fold0"].astype(float)
    df["source_line"] = df["source_line"].astype(int)
    return df


@cache
def _table() -> pd.DataFrame:
    return read()


def scores(dataset_name: str, metric: str) -> list[tuple[str, float, str]]:
    """``(method, fold-0 score, source)`` for one archive dataset by its archive name, in
    :data:`METHODS` order; empty for a dataset (or a metric) nothing was published for."""
    t = _table()
    rows = t[(t["dataset"] == dataset_name) & (t["metric"] == metric)]
    order = {m: i for i, m in enumerate(METHODS)}
    return [(str(r.method), float(r.fold0), f"{r.source_file}:{r.source_line}")
            for r in sorted(rows.itertuples(index=False), key=lambda r: order[r.method])]


def section(dataset_name: str, metric: str, direction: str,
            board: Sequence[LeaderboardRow]) -> Published | None:
    """The published scores of a dataset with the gap of the best recurrent cell to each:
    its mean minus the published score, so a positive gap is better for accuracy and worse
    for an error."""
    found = scores(dataset_name, metric)
    if not found:
        return None
    recurrent = [r for r in board if is_recurrent(r.arch.split("-", 1)[0])
                 and math.isfinite(r.mean)]
    best = (max if direction == "maximize" else min)(recurrent, key=lambda r: r.mean,
                                                       default=None)
    mean = best.mean if best is not None else math.nan
    return Published(best.arch if best is not None else "", mean,
                     [PublishedScore(m, s, src, mean - s) for m, s, src in found])
