"""Reading the stores into the record's shape: MLflow runs (tags, params, metrics, curves,
artifacts) and Optuna trials.

Studies (resuming), the report (``python -m bench.report --study``) and the record itself read
the stores through here, so a run is turned into a row in one way only. Only this module talks
to MLflow's search API; everything after it works on the tidy record
(:mod:`bench.results.record`).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from bench.results.record import CURVE_KEYS, RUN_KINDS, tidy
from bench.results.rope import dataset_rope
from bench.stores import StoreAddress
from bench.tracking import TAGS

if TYPE_CHECKING:
    from mlflow.entities import Run


def _experiment_ids(client: MlflowClient) -> list[str]:
    return sorted(e.experiment_id for e in client.search_experiments())


def search(client: MlflowClient, filter_string: str, *, deleted: bool = False) -> list[Run]:
    """Every run that matches, over all pages; ``deleted``: only runs deleted in MLflow."""
    from mlflow.entities import ViewType

    exps = _experiment_ids(client)
    if not exps:
        return []
    out: list[Run] = []
    token = None
    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    while True:
        page = client.search_runs(exps, filter_string=filter_string, max_results=1000,
                                  page_token=token, run_view_type=view)
        out.extend(page)
        token = page.token
        if not token:
            break
    return sorted(out, key=lambda r: r.info.run_id)


def read_artifact(client: MlflowClient, run_id: str, path: str, use):
    """Downloads one artifact into a temporary folder, hands its path to ``use`` and cleans up;
    None when the artifact (or its store) is missing, which must not stop a report."""
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, dst_path=tmp)
        except Exception:
            return None
        return use(Path(local))


def run_row(r) -> dict:
    """An MLflow run as a flat row: the fields the study tags name, then ``tag:``, ``param:``
    and ``metric:`` columns."""
    tags, params, metrics = r.data.tags, r.data.params, r.data.metrics
    row = {
        "run_id": r.info.run_id,
        "status": r.info.status,
        "start_ms": r.info.start_time,
        "end_ms": r.info.end_time,
        "experiment_id": r.info.experiment_id,
        "phase": tags.get(TAGS["phase"], ""),
        "dataset": tags.get(TAGS["study_dataset"]) or tags.get("dataset", ""),
        "dataset_name": tags.get("dataset", ""),
        "arch": tags.get("arch", ""),
        "seed": tags.get("seed"),
        "metric": tags.get("metric", ""),
        "direction": tags.get("direction", ""),
        "units": tags.get("units", ""),
        "task": tags.get("task", ""),
        "pruned": tags.get("pruned") == "true",
        "parent": tags.get("mlflow.parentRunId", ""),
    }
    row.update({f"tag:{k}": v for k, v in tags.items() if not k.startswith("mlflow.")})
    row.update({f"param:{k}": v for k, v in params.items()})
    row.update({f"metric:{k}": v for k, v in metrics.items()})
    return row


def primary_value(row: pd.Series) -> tuple[float, str]:
    """The run's test score in the dataset's own units (degC, shares) when it has them."""
    m = row["metric"]
    units = row.get(f"metric:test/{m}_units")
    if units is not None and not (isinstance(units, float) and math.isnan(units)):
        return float(units), row.get("units") or ""
    v = row.get(f"metric:test/{m}")
    return (math.nan if v is None else float(v)), ""




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


def withdrawn(client: MlflowClient, study: str) -> set[str]:
    """Run ids of the study's runs deleted in MLflow (the UI's Delete, ``mlflow runs delete``).

    Deleting a run is how a user withdraws it: a run found wrong after the fact (a bug in
    its protocol, a broken machine) leaves the record at the next report and is trained again
    at the next resume, instead of living on in the committed record the study resumes from.
    """
    return {r.info.run_id for r in search(client, f"tags.{TAGS['study']} = '{study}'",
                                          deleted=True)}


def from_store(store: StoreAddress, study: str, *,
               storage: str | None = None) -> pd.DataFrame:
    """Reads every run tagged ``study=<study>`` from MLflow (and its tuning trials from the
    Optuna storage the runs name, or ``storage``) into the record's shape."""
    client = MlflowClient(tracking_uri=store.connect())
    runs = search(client, f"tags.{TAGS['study']} = '{study}'")
    if not runs:
        raise LookupError(
            f"no MLflow runs tagged {TAGS['study']}={study!r} in {store}; run "
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
    row = run_row(r)
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
