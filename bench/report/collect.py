"""Runs -> tables: everything the report shows is read here, from the study's tidy record.

The report must be a function of the record alone (so that regenerating it gives the same
bytes), so nothing here looks at the clock, the working directory or the machine; every listing
is sorted on stable keys. Reading MLflow itself is :mod:`bench.results.reader`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

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
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)   # one row per tuning trial


def study_data(record: pd.DataFrame, source: str = "") -> StudyData:
    """The report's view of a tidy record (:mod:`bench.results.record`)."""
    from bench.results.record import curves
    from bench.results.sessions import close_interrupted

    rows = close_interrupted(record).copy()
    rows["phase"] = rows["kind"]
    study = str(rows["study"].dropna().iloc[0]) if rows["study"].notna().any() else ""
    sessions = rows[rows["kind"] == "session"].sort_values(["start_ms", "run_id"])
    tune = rows[rows["kind"] == "tune"].sort_values(["dataset", "arch", "run_id"])
    trials = rows[rows["kind"] == "trial"]
    finals = rows[rows["kind"].isin(FINAL_PHASES) & (rows["status"] == "FINISHED") & ~rows["pruned"]]
    finals = finals.copy()
    finals["seed"] = finals["seed"].astype(int)
    finals["tuning_seed"] = finals["tuning_seed"].astype("Int64")
    # A resumed study may hold two FINISHED runs of the same seed (e.g. a crash after the
    # run closed but before the runner noticed): keep the earliest, as the runner does.
    finals = finals.sort_values(["dataset", "arch", "tuning_seed", "seed", "start_ms", "run_id"],
                                na_position="first")
    finals = finals.drop_duplicates(["dataset", "arch", "tuning_seed", "seed"], keep="first")
    finals["value"] = finals["score"].astype(float)
    finals["value_units"] = finals["score_units"].fillna("").astype(str)
    finals["units"] = finals["units"].fillna("").astype(str)
    finals["task"] = finals["task"].fillna("").astype(str)
    finals = finals.reset_index(drop=True)
    definition = ""
    if len(sessions) and isinstance(sessions.iloc[-1]["definition"], str):
        definition = sessions.iloc[-1]["definition"]
    histories = {r["run_id"]: curves(r) for _, r in finals.iterrows()}
    return StudyData(study, source, finals, sessions, tune, rows, histories, definition, trials)


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
    keys = ["dataset", "arch", "seed"]
    if r["tuning_seed"].dropna().nunique() > 1:   # tuning repeated: say which tuning a run used
        base.insert(base.columns.get_loc("seed") + 1, "tuning_seed", r["tuning_seed"])
        keys = ["dataset", "arch", "tuning_seed", "seed"]
    out = pd.concat(
        [base, r[metric_cols].rename(columns=lambda c: c[7:]),
         r[param_cols].rename(columns=lambda c: c[6:]), r[["run_id"]]], axis=1,
    )
    return out.sort_values(keys).reset_index(drop=True)
