"""MLflow -> tables: everything the report shows is read here, from runs tagged with the study.

The report must be a function of the store alone (so that regenerating it gives the same bytes),
so nothing here looks at the clock, the working directory or the machine; every listing is
sorted on stable keys.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from bench.study import TAGS

FINAL_PHASES = ("final", "baseline")
# Params kept in results.csv beside the metrics: the knobs tuning may have changed.
PARAM_PREFIXES = ("model.", "optim.", "batch_size", "trainer.max_epochs", "trainer.limit_",
                  "n_params", "layer_sizes")


@dataclass
class StudyData:
    study: str
    uri: str
    runs: pd.DataFrame              # one row per final/baseline run (FINISHED, unpruned)
    sessions: pd.DataFrame          # one row per `python -m bench.study` invocation
    tune_parents: pd.DataFrame      # one row per tuning cell's parent run
    all_runs: pd.DataFrame          # every run tagged with the study (for wall time)
    histories: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    definition: str = ""            # the study definition (YAML) of the latest session


def _experiments(client: MlflowClient) -> list[str]:
    return sorted(e.experiment_id for e in client.search_experiments())


def _search(client: MlflowClient, filter_string: str) -> list:
    exps = _experiments(client)
    if not exps:
        return []
    out, token = [], None
    while True:
        page = client.search_runs(exps, filter_string=filter_string, max_results=1000,
                                  page_token=token)
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


def _row(r) -> dict:
    tags, params, metrics = r.data.tags, r.data.params, r.data.metrics
    row = {
        "run_id": r.info.run_id,
        "status": r.info.status,
        "start_ms": r.info.start_time,
        "end_ms": r.info.end_time,
        "experiment_id": r.info.experiment_id,
        "phase": tags.get(TAGS["phase"], ""),
        "dataset": tags.get(TAGS["dataset"]) or tags.get("dataset", ""),
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


def load(uri: str, study: str, *, with_histories: bool = True) -> StudyData:
    client = MlflowClient(tracking_uri=uri)
    runs = _search(client, f"tags.{TAGS['study']} = '{study}'")
    rows = pd.DataFrame([_row(r) for r in runs])
    if rows.empty:
        raise LookupError(
            f"no MLflow runs tagged {TAGS['study']}={study!r} in {uri}; run "
            f"`python -m bench.study sweeps/study_{study}.yaml` first, or pass --tracking-uri"
        )
    sessions = rows[rows["phase"] == "session"].sort_values(["start_ms", "run_id"])
    tune = rows[rows["phase"] == "tune"].sort_values(["dataset", "arch", "run_id"])
    finals = rows[rows["phase"].isin(FINAL_PHASES) & (rows["status"] == "FINISHED") & ~rows["pruned"]]
    finals = finals.copy()
    finals["seed"] = finals["seed"].astype(int)
    # A resumed study may hold two FINISHED runs of the same seed (e.g. a crash after the
    # run closed but before the runner noticed): keep the earliest, as the runner does.
    finals = finals.sort_values(["dataset", "arch", "seed", "start_ms", "run_id"])
    finals = finals.drop_duplicates(["dataset", "arch", "seed"], keep="first")
    vals = finals.apply(primary_value, axis=1, result_type="expand") if len(finals) else None
    finals["value"] = vals[0] if vals is not None else []
    finals["value_units"] = vals[1] if vals is not None else []
    finals = finals.reset_index(drop=True)

    definition = ""
    if len(sessions):
        latest = sessions.iloc[-1]["run_id"]
        definition = read_artifact(client, latest, "study.yaml", lambda p: p.read_text()) or ""

    histories: dict[str, dict[str, list[tuple[int, float]]]] = {}
    if with_histories:
        for rid, metric, units in finals[["run_id", "metric", "units"]].itertuples(index=False):
            keys = [f"val/{metric}", "train/loss", "val/loss"]
            if units:
                keys.append(f"val/{metric}_units")
            h = {}
            for k in keys:
                pts = client.get_metric_history(rid, k)
                if pts:
                    pts = sorted(pts, key=lambda m: (m.step, m.timestamp))
                    h[k] = [(i, float(m.value)) for i, m in enumerate(pts)]
            histories[rid] = h
    return StudyData(study, uri, finals, sessions, tune, rows, histories, definition)


def results_table(data: StudyData) -> pd.DataFrame:
    """results.csv: one row per final run, stable columns and order."""
    r = data.runs
    if r.empty:
        return pd.DataFrame(columns=["dataset", "arch", "phase", "seed", "run_id"])
    base = r[["dataset", "dataset_name", "arch", "phase", "seed", "metric", "direction", "units",
              "value"]].copy()
    base = base.rename(columns={"value": "score", "units": "score_units"})
    base["score_units"] = r["value_units"]
    metric_cols = sorted(c for c in r.columns if c.startswith("metric:") and r[c].notna().any())
    param_cols = sorted(
        c for c in r.columns
        if c.startswith("param:") and c[6:].startswith(PARAM_PREFIXES) and r[c].notna().any()
    )
    out = pd.concat(
        [base, r[metric_cols].rename(columns=lambda c: c[7:]),
         r[param_cols].rename(columns=lambda c: c[6:]), r[["run_id"]]], axis=1,
    )
    return out.sort_values(["dataset", "arch", "seed"]).reset_index(drop=True)
