"""The MLflow parent run of a study: found again on resume, never created twice.

Trials are child runs created by whichever process runs them (``mlflow.parentRunId`` tag),
so the tree survives workers on several machines. The parent's id is written into the
study's user attributes under the study lock: a worker that starts while another is
creating the parent waits for the lock and then finds the id, rather than racing to a
second parent. If that id is gone (another MLflow store), the parent is found by its tags,
and only then created.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench import tracking
from bench.stores import mask
from bench.sweep import recovery

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
TAG_STUDY = tracking.TAGS["optuna_study"]
TAG_TRIAL = tracking.TAGS["optuna_trial"]
TAG_ROLE = tracking.TAGS["sweep_role"]


def _alive(client: MlflowClient, run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def find_parent(client: MlflowClient, experiment_id: str, study_name: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{TAG_ROLE} = 'parent' and tags.{TAG_STUDY} = '{study_name}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def ensure_parent(
    study: optuna.Study,
    client: MlflowClient,
    experiment_id: str,
    tags: dict[str, Any],
) -> str:
    """Returns the parent run id, reopening (status RUNNING) or creating it. Call under the lock."""
    run_id = study.user_attrs.get(PARENT_ATTR)
    if not _alive(client, run_id):
        run_id = find_parent(client, experiment_id, study.study_name)
    if run_id is None:
        all_tags = {TAG_ROLE: "parent", TAG_STUDY: study.study_name, **tags}
        run_id = tracking.start_run(client, experiment_id, study.study_name, all_tags)
        log.info("MLflow parent run %s created for study %s", run_id, study.study_name)
    else:
        client.update_run(run_id, status="RUNNING")
        tracking.log_tags(client, run_id, tags)
    if study.user_attrs.get(PARENT_ATTR) != run_id:
        study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def close_child(client: MlflowClient, experiment_id: str, study_name: str, number: int,
                reason: str) -> None:
    """Marks the MLflow run of a trial whose worker vanished as FAILED.

    Whatever its status: Lightning's logger already closes a run FINISHED when ``fit``
    ends, so a worker killed while testing leaves a FINISHED run for a failed trial.
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{TAG_STUDY} = '{study_name}' and tags.{TAG_TRIAL} = '{number}'",
    )
    for run in runs:
        tracking.log_tags(client, run.info.run_id, {tracking.TAGS["error"]: reason})
        client.set_terminated(run.info.run_id, "FAILED")


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}


def reconcile_children(study: optuna.Study, client: MlflowClient, experiment_id: str) -> int:
    """Closes trial runs left RUNNING in MLflow whose trial Optuna has finished (a worker
    killed between telling Optuna and closing its run, or a lost trial whose run could not
    be closed when it was recovered); returns how many were closed."""
    states = {t.number: t for t in study.get_trials(deepcopy=False)}
    runs = client.search_runs(
        [experiment_id], max_results=5000,
        filter_string=f"tags.{TAG_STUDY} = '{study.study_name}' and tags.{TAG_ROLE} = 'trial' "
                      "and attributes.status = 'RUNNING'",
    )
    closed = 0
    for run in runs:
        try:
            trial = states.get(int(run.data.tags.get(TAG_TRIAL, "")))
        except ValueError:
            continue
        if trial is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        if trial.state == TrialState.FAIL:
            why = trial.user_attrs.get("error") or trial.user_attrs.get("lost") or "worker lost"
            tracking.log_tags(client, run.info.run_id, {tracking.TAGS["error"]: why})
            client.set_terminated(run.info.run_id, "FAILED")
        else:
            client.set_terminated(run.info.run_id, "FINISHED")
        closed += 1
    return closed


def summary_text(study: optuna.Study, info: dict[str, Any]) -> str:
    counts = _counts(study)
    lines = [f"# Study {study.study_name}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| state | trials |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items() if v]
    try:
        best = study.best_trial
        lines += ["", f"Best trial: {best.number}, value {best.value:.6g}", "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in best.params.items()]
    except ValueError:
        lines += ["", "No complete trial yet."]
    failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    if failed:
        lines += ["", "| failed trial | reason |", "|---|---|"]
        for t in failed:
            why = t.user_attrs.get("error") or t.user_attrs.get("lost") or "worker lost"
            lines.append(f"| {t.number} | {why} |")
    return "\n".join(lines) + "\n"


def finalize(
    study: optuna.Study,
    client: MlflowClient,
    run_id: str,
    *,
    n_trials: int,
    info: dict[str, Any],
    interrupted: bool,
    stopped: str = "",
) -> None:
    """Best value and params, Optuna's plots and the summary, logged to the parent run.

    Called by every process that ran a sweep when it stops, so the parent reflects the
    study at the last stop; params would be immutable in MLflow, so the best parameters
    go to tags and a JSON artifact, which later sweeps may overwrite. The parent is never
    left RUNNING: FINISHED once the study holds its trials, else KILLED (``interrupted``) or
    FAILED, with ``stopped`` (why this process stopped) as its error tag.
    """
    counts = _counts(study)
    done = counts["complete"] + counts["pruned"]
    best_params = _log_best(study, client, run_id, counts, done)
    lost = recovery.lost_for_good(study.get_trials(deepcopy=False))
    info = {**info, "trials requested (complete + pruned)": n_trials,
            "trials lost for good (number: retries used)":
                ", ".join(f"{n}: {r}" for n, r in lost) or "none"}
    if lost:
        log.warning("study %s: trials %s lost their worker after using their retries",
                    study.study_name, ", ".join(f"{n} ({r} retries)" for n, r in lost))
    experiment_id = client.get_run(run_id).info.experiment_id
    closed = reconcile_children(study, client, experiment_id)
    if closed:
        log.info("closed %d trial run(s) that their lost workers had left RUNNING", closed)
    client.log_text(run_id, json.dumps(best_params, indent=2, default=str), "best_params.json")
    client.log_text(run_id, mask(summary_text(study, info)), "summary.md")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        study.trials_dataframe().to_csv(csv, index=False)
        client.log_artifact(run_id, str(csv))
    _log_plots(study, client, run_id)
    if done >= n_trials:
        client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))
    elif interrupted:
        tracking.log_tags(client, run_id, {tracking.TAGS["error"]: stopped or "interrupted"})
        client.set_terminated(run_id, "KILLED")
    else:
        tracking.log_tags(client, run_id, {tracking.TAGS["error"]: stopped or (
            f"stopped with {done}/{n_trials} trials finished")})
        client.set_terminated(run_id, "FAILED")


def _log_best(study: optuna.Study, client: MlflowClient, run_id: str,
              counts: dict[str, int], done: int) -> dict[str, Any]:
    """Trial counts and the best value as metrics, the best trial as tags; its params."""
    metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
    epochs = [t.user_attrs.get("epochs_trained") for t in study.get_trials(deepcopy=False)]
    metrics["epochs_trained_total"] = float(sum(e for e in epochs if e))
    best_params: dict[str, Any] = {}
    try:
        best = study.best_trial
        # NaN (left out below) where the best trial has no single value
        metrics["best_value"] = math.nan if best.value is None else float(best.value)
        best_params = best.params
        tags = {f"best_param.{k}": v for k, v in best_params.items()}
        tags["best_trial"] = best.number
        tags["best_run_id"] = best.user_attrs.get(tracking.RUN_ID_ATTR)
        tracking.log_tags(client, run_id, tags)
    except ValueError:
        pass
    tracking.log_metrics(client, run_id, {k: v for k, v in metrics.items()
                                          if math.isfinite(v)}, step=done)
    return best_params


def _log_plots(study: optuna.Study, client: MlflowClient, run_id: str) -> None:
    """Optuna's history, importance and intermediate-value plots, those the study allows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, Callable[[optuna.Study], Any]] = {
        "optimization_history": optuna.visualization.matplotlib.plot_optimization_history,
        "param_importances": optuna.visualization.matplotlib.plot_param_importances,
        "intermediate_values": optuna.visualization.matplotlib.plot_intermediate_values,
    }
    for name, fn in plots.items():
        try:
            with warnings.catch_warnings():  # Optuna's plots are experimental, and say so
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            client.log_figure(run_id, fig, f"plots/{name}.png")
            plt.close(fig)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # Importances need two complete trials with varied parameters, for example.
            log.info("study %s: no %s plot yet (%s)", study.study_name, name, exc)
