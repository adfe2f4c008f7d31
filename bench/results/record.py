"""The tidy record: every run of a study, in CSV files that travel with the repository.

The MLflow store and the Optuna storage are local to the machine that ran the study; the report
must be rebuildable without them. ``python -m bench.report --study NAME`` therefore first writes
the record ``reports/<study>/record/`` from the stores and then builds the report *from it*,
and ``python -m bench.report --from reports/<study>/record`` builds the same bytes from the
record alone.

The record is a folder of shards, because a study of twenty-odd datasets writes tens of
megabytes of curves: one file in git would be too big to review or diff, and every session
would rewrite all of it. Each dataset has ``<dataset>.csv`` (tuning cells, final and baseline
runs) and ``<dataset>.trials.csv`` (its tuning trials); rows of no dataset (the study's
sessions) are in ``_study.csv``. A shard lists only the columns it has values in; reading
concatenates the shards, so the split changes no value. A single CSV file (the layout before
shards) is still read wherever a record is.

One row per run. ``kind`` is ``session`` (one ``python -m bench.study`` invocation, with the
study definition as run), ``tune`` (a tuning cell's parent run), ``trial`` (one tuning trial:
its parameters, search distributions, objective and per-epoch objective), ``final`` or
``baseline`` (a retrained configuration under one seed, tested once). Fixed columns come first
(:data:`BASE_COLUMNS`); then ``tag:*``, ``param:*`` (the flattened config), ``metric:*``
(last logged values) and ``curve:*`` (per-epoch values as a JSON list), each sorted. Paths are
written relative to the project (a store at ``/home/x/bench/mlflow.db`` is ``mlflow.db``), so
no file names a machine. Curve values that are float32 (as the trainer logs them) are written
with float32's shortest decimal (``0.6931472``, not ``0.6931471824645996``): it reads back as
the same float32, and halves the size of the curves.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import CONF_DIR

# Paths in the record are written relative to the directory the report is made from (the
# project, when run from a checkout), so no file names a folder of the machine.
ROOT = Path.cwd().resolve()
CONF_DATASETS = CONF_DIR / "dataset"
RECORD_NAME = "record"
LEGACY_NAME = "record.csv"
STUDY_SHARD = "_study.csv"
TRIALS_SUFFIX = ".trials.csv"
KINDS = ("session", "tune", "final", "baseline", "trial")
RUN_KINDS = ("final", "baseline")
BASE_COLUMNS = [
    "kind", "study", "dataset", "dataset_name", "arch", "seed", "tuning_seed", "trial", "status",
    "pruned", "metric", "direction", "units", "task", "rope", "rope_source", "score",
    "score_units", "value", "run_id", "parent_run_id", "optuna_study", "start_ms", "end_ms",
    "hardware", "git_sha", "command", "source", "definition", "trial_params", "distributions",
]
INT_COLUMNS = ("seed", "tuning_seed", "trial", "start_ms", "end_ms")
FLOAT_COLUMNS = ("rope", "score", "value")
BOOL_COLUMNS = ("pruned",)
CURVE_KEYS = ("val/{m}", "val/{m}_units", "train/loss", "val/loss")


# ---------------------------------------------------------------------------------------------
# Paths relative to the project
# ---------------------------------------------------------------------------------------------


def relative_paths(text: str, root: Path = ROOT) -> str:
    """Rewrites absolute paths inside ``text`` relative to the project root (``../x`` for a
    sibling folder) and the home folder as ``~``; URLs keep their scheme."""
    if not isinstance(text, str) or "/" not in text:
        return text
    root_s = str(root).rstrip("/")

    def fix(m: re.Match) -> str:
        path = m.group(0)
        if path == root_s:
            return "."
        if path.startswith(root_s + "/"):
            return path[len(root_s) + 1:]
        try:
            rel = os.path.relpath(path, root_s)
        except ValueError:
            return path
        if rel.count("..") <= 2:
            return rel
        home = str(Path.home())
        return "~" + path[len(home):] if path.startswith(home + "/") else path

    # An absolute path: after start, whitespace, quotes, '=' or a URI's ':///' (sqlite:////x).
    return re.sub(r"(?:(?<=^)|(?<=[\s'\"=(,\[])|(?<=:///))/(?!/)[^\s'\",)\]]+", fix, text)


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Stable column order, stable row order, relative paths, one type per column."""
    df = df.copy()
    for c in BASE_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    drop = [c for c in df.columns if c not in BASE_COLUMNS and not c.startswith(
        ("tag:", "param:", "metric:", "curve:"))]
    df = df.drop(columns=drop)
    prefixed = sorted(c for c in df.columns if c not in BASE_COLUMNS)
    df = df[BASE_COLUMNS + prefixed]
    cols = {}
    for c in INT_COLUMNS:
        cols[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in FLOAT_COLUMNS:
        cols[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in (c for c in df.columns if c.startswith("metric:")):
        cols[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    cols["pruned"] = df["pruned"].map(lambda v: v is True or str(v) == "True").astype(bool)
    text = [c for c in df.columns if c not in INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS
            and not c.startswith("metric:")]
    for c in text:
        cols[c] = df[c].map(lambda v: np.nan if v is None or (isinstance(v, float) and math.isnan(v))
                            or v == "" else relative_paths(str(v))).astype(object)
    df = pd.DataFrame({c: cols[c] for c in df.columns}, index=df.index)
    order = {k: i for i, k in enumerate(KINDS)}
    df["_k"] = df["kind"].map(lambda k: order.get(k, len(order)))
    df = df.sort_values(["_k", "dataset", "arch", "tuning_seed", "seed", "trial", "start_ms",
                         "run_id"], na_position="first", kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)


def merge(store: pd.DataFrame, committed: pd.DataFrame | None) -> pd.DataFrame:
    """The union of a record read from the stores and the committed one, keyed on run id.

    A study that ran over several machines or sittings has its earlier runs only in the
    committed record (see :mod:`bench.study.resume`); a run present in both takes the stores' values
    (it may have finished since) and keeps the record's where the stores have none.
    """
    if committed is None or committed.empty:
        return tidy(store)
    if store is None or store.empty:
        return tidy(committed)
    a = tidy(store).set_index("run_id").astype(object)
    b = tidy(committed).set_index("run_id").astype(object)
    a = a[~a.index.duplicated()]
    b = b[~b.index.duplicated()]
    both = a.combine_first(b).copy()
    return tidy(both.reset_index(names="run_id"))


def withdraw(df: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    """The record without the runs ``run_ids`` (deleted in MLflow by whoever found them
    wrong); a tuning trial's row goes with its run, so the trial is restored no more."""
    if not run_ids:
        return df
    return df[~df["run_id"].isin(run_ids)].reset_index(drop=True)


def locate(folder: Path) -> Path | None:
    """The record in a report folder: the shard folder, else a single-file record (the layout
    before shards), else None."""
    for p in (Path(folder) / RECORD_NAME, Path(folder) / LEGACY_NAME):
        if p.is_dir() or p.is_file():
            return p
    return None


def _compact_curve(text: object) -> object:
    """A curve's JSON with float32 values in float32's shortest decimal (see the module)."""
    if not isinstance(text, str) or not text.startswith("["):
        return text
    values = json.loads(text)
    parts = []
    for v in values:
        f = np.float32(v)
        parts.append(str(f) if math.isfinite(v) and float(f) == v else json.dumps(v))
    return "[" + ", ".join(parts) + "]"


def _shard_name(dataset: object, kind: str) -> str:
    if not isinstance(dataset, str) or not dataset:
        return STUDY_SHARD
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dataset) or dataset.startswith("_"):
        raise ValueError(f"dataset key {dataset!r} cannot name a record shard; expected "
                         "letters, digits, '_', '.', '-', not starting with '_'")
    return f"{dataset}{TRIALS_SUFFIX}" if kind == "trial" else f"{dataset}.csv"


def write(df: pd.DataFrame, path: Path) -> Path:
    """Writes the record as the shard folder ``path`` (see the module); shards of an earlier
    write that this one has no rows for are removed, so the folder is exactly the record."""
    path = Path(path)
    if path.suffix == ".csv":
        raise ValueError(f"{path}: a record is a folder of shards now; pass its folder "
                         f"(e.g. {path.with_suffix('')})")
    df = tidy(df)
    for c in (c for c in df.columns if c.startswith("curve:")):
        df[c] = df[c].map(_compact_curve)
    names = [_shard_name(d, k) for d, k in zip(df["dataset"], df["kind"], strict=True)]
    path.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, shard in df.groupby(pd.Series(names, index=df.index), sort=True):
        shard = shard[[c for c in df.columns if c in BASE_COLUMNS or shard[c].notna().any()]]
        tmp = path / f".{name}.tmp"
        shard.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path / name)
        written.add(name)
    for old in path.glob("*.csv"):
        if old.name not in written:
            old.unlink()
    legacy = path.parent / LEGACY_NAME
    if legacy.is_file():
        legacy.unlink()   # its rows were merged into the folder (see build)
    return path


def read(path: Path) -> pd.DataFrame:
    """The record (a shard folder, or a single CSV file) with its types back: numbers as
    numbers, empty cells as missing."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise LookupError(f"tidy record {path}: no shards (*.csv) in the folder")
    elif path.is_file():
        files = [path]
    else:
        raise LookupError(f"tidy record {path}: not found (python -m bench.report --study "
                          "NAME writes it)")
    # shards list only their own columns: the concatenation's gaps are empty cells too
    df = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files],
                   ignore_index=True).fillna("")
    missing = [c for c in ("kind", "dataset", "arch", "seed", "score") if c not in df.columns]
    if missing:
        raise LookupError(f"tidy record {path}: columns {missing} missing; not a bench record")
    for c in df.columns:
        df[c] = df[c].map(lambda v: np.nan if v == "" else v).astype(object)
    return tidy(df)


def curves(row: pd.Series) -> dict[str, list[tuple[int, float]]]:
    """A run's per-epoch curves as {key: [(epoch index, value), ...]}."""
    out = {}
    for c, v in row.items():
        if str(c).startswith("curve:") and isinstance(v, str):
            out[c[6:]] = list(enumerate(float(x) for x in json.loads(v)))
    return out
