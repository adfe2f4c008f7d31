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
from bench.report import skill
from bench.stores import StoreAddress
from bench.tracking import TAGS

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
# From the stores
# ---------------------------------------------------------------------------------------------


def dataset_rope(dataset_name: str, direction: str, param: str | None = None) -> tuple[float, str]:
    """The ROPE of a dataset: the run's ``dataset.rope`` param, else the dataset config's
    ``rope`` key, else the default rule (:mod:`bench.report.skill`)."""
    if param is not None and not (isinstance(param, float) and math.isnan(param)):
        r, src = skill.resolve_rope(param, direction)
        if src == "config":
            return r, "run config"
    path = CONF_DATASETS / f"{dataset_name}.yaml"
    if path.is_file():
        from omegaconf import OmegaConf

        r, src = skill.resolve_rope(OmegaConf.load(path).get("rope"), direction)
        if src == "config":
            return r, f"conf/dataset/{dataset_name}.yaml"
    return skill.default_rope(direction), "default rule"


def _curves(client, run_id: str, metric: str, units: str) -> dict[str, str]:
    out = {}
    for pattern in CURVE_KEYS:
        key = pattern.format(m=metric)
        if "_units" in key and not units:
            continue
        pts = client.get_metric_history(run_id, key)
        if pts:
            pts = sorted(pts, key=lambda m: (m.step, m.timestamp))
            out[f"curve:{key}"] = json.dumps([float(m.value) for m in pts])
    return out


def _trials(storage: str, name: str) -> list[dict]:
    import optuna
    from optuna.distributions import distribution_to_json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        st = optuna.load_study(study_name=name, storage=StoreAddress.optuna(storage).connect())
    except Exception:
        return []
    rows = []
    for t in st.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values.items())
        rows.append({
            "kind": "trial", "optuna_study": name, "trial": t.number, "status": t.state.name,
            "value": t.value if t.value is not None else math.nan,
            "run_id": t.user_attrs.get("mlflow_run_id") or f"{name}#{t.number}",
            "trial_params": json.dumps(t.params, sort_keys=True, default=str),
            "distributions": json.dumps({k: distribution_to_json(d)
                                         for k, d in sorted(t.distributions.items())}),
            "curve:objective": json.dumps([float(v) for _, v in steps]) if steps else math.nan,
        })
    return rows


def from_store(uri: str, study: str, *, storage: str | None = None) -> pd.DataFrame:
    """Reads every run tagged ``study=<study>`` from MLflow (and its tuning trials from the
    Optuna storage the runs name, or ``storage``) into the record's shape."""
    from mlflow.tracking import MlflowClient

    from bench.report.collect import _search

    client = MlflowClient(tracking_uri=StoreAddress.tracking(uri).connect())
    runs = _search(client, f"tags.{TAGS['study']} = '{study}'")
    if not runs:
        raise LookupError(
            f"no MLflow runs tagged {TAGS['study']}={study!r} in {uri}; run "
            f"`python -m bench.study sweeps/study_{study}.yaml` first, or pass --tracking-uri"
        )
    df = pd.DataFrame([_store_row(client, r, study) for r in runs])
    for c in ("tag:optuna_storage", "tag:tracking_uri"):
        if c not in df.columns:
            df[c] = np.nan
    df = _label_tuning_seed(df)
    df = _with_trials(df, study, storage)
    df = df.copy()   # one block again after the column-by-column build (pandas warns otherwise)
    return tidy(_with_ropes(df))


def _store_row(client, r, study: str) -> dict:
    """One MLflow run as a record row; final and baseline runs bring their score and curves,
    a session its study definition, as the record must hold them without the store."""
    from bench.report.collect import _row, primary_value, read_artifact

    row = _row(r)
    row["kind"] = row.pop("phase") or "trial"
    row["status"] = row.pop("status")
    row["parent_run_id"] = row.pop("parent")
    row["study"] = study
    row["optuna_study"] = row.get(f"tag:{TAGS['optuna_study']}", "") or row.get(
        "tag:optuna_study", "")
    row["hardware"] = row.get("tag:hardware", "")
    row["git_sha"] = row.get("tag:git_sha", "")
    row["command"] = row.get("tag:command", "")
    row["tuning_seed"] = row.get("tag:tuning_seed")
    row["trial"] = row.get("tag:optuna_trial")
    row["source"] = "mlflow"
    if row["kind"] in RUN_KINDS:
        value, units = primary_value(pd.Series(row))
        row["score"], row["score_units"] = value, units
        row.update(_curves(client, row["run_id"], row["metric"], row["units"]))
    if row["kind"] == "session":
        row["definition"] = read_artifact(client, row["run_id"], "study.yaml",
                                          lambda p: p.read_text()) or ""
    for k in ("start_ms", "end_ms"):
        row[k] = row.pop(k)
    return row


def _tuned(df: pd.DataFrame) -> pd.Series:
    """The final and baseline runs whose configuration came from a tuning study."""
    return df["kind"].isin(RUN_KINDS) & df["optuna_study"].fillna("").astype(bool)


def _label_tuning_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Tuned runs recorded before the tuning_seed tag existed get the primary sampler seed of
    the latest definition: they were tuned with it."""
    from omegaconf import OmegaConf

    sessions = df[df["kind"] == "session"].sort_values(["start_ms", "run_id"])
    primary = 0
    if len(sessions) and sessions.iloc[-1].get("definition"):
        try:
            primary = int(OmegaConf.create(sessions.iloc[-1]["definition"]).tuning.seed)
        except Exception:
            primary = 0
    df["tuning_seed"] = pd.to_numeric(df["tuning_seed"], errors="coerce").astype(float)
    df["optuna_study"] = df["optuna_study"].astype(object)
    df.loc[_tuned(df) & df["tuning_seed"].isna(), "tuning_seed"] = primary
    return df


def _with_trials(df: pd.DataFrame, study: str, storage: str | None) -> pd.DataFrame:
    """Tuning trials from Optuna (parameters, distributions, intermediate values), merged onto
    the trials' MLflow runs by run id: of every tuned cell, and of every tuning cell still
    without retrains (a study resumed from the record then goes on tuning, not over)."""
    tuning = df["kind"].eq("tune") & df["optuna_study"].fillna("").astype(bool)
    cells = (df.loc[_tuned(df) | tuning, ["optuna_study", "tag:optuna_storage", "dataset",
                                          "arch", "tuning_seed"]].drop_duplicates("optuna_study"))
    trial_rows = []
    for name, st, ds, arch, tseed in cells.itertuples(index=False):
        st = storage or st
        if not isinstance(st, str) or not st or "***" in st:
            continue   # a masked storage URL: --storage names the real one
        for t in _trials(st, name):
            t.update({"study": study, "dataset": ds, "arch": arch, "tuning_seed": tseed,
                      "source": "optuna"})
            trial_rows.append(t)
    if not trial_rows:
        return df
    tr = pd.DataFrame(trial_rows).set_index("run_id")
    base = df.set_index("run_id")
    # object columns: a trial with no MLflow run (restored from a record) leaves gaps in
    # integer columns such as end_ms, which combine_first would otherwise cast back to int
    merged = tr.combine_first(base.loc[base.index.intersection(tr.index)].astype(object))
    merged["kind"] = "trial"
    return pd.concat([base.drop(index=base.index.intersection(tr.index)), merged]).copy() \
        .reset_index(names="run_id")


def _with_ropes(df: pd.DataFrame) -> pd.DataFrame:
    """Each dataset's ROPE, resolved once and written down: a record rebuilt elsewhere must not
    depend on that machine's dataset configs."""
    ropes = {}
    for ds, g in df[df["kind"].isin(RUN_KINDS)].groupby("dataset", sort=True):
        r = g.iloc[0]
        ropes[ds] = dataset_rope(r["dataset_name"], r["direction"], r.get("param:dataset.rope"))
    m = df["dataset"].isin(ropes) & df["kind"].isin(RUN_KINDS)
    df.loc[m, "rope"] = df.loc[m, "dataset"].map(lambda d: ropes[d][0])
    df.loc[m, "rope_source"] = df.loc[m, "dataset"].map(lambda d: ropes[d][1])
    return df


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
