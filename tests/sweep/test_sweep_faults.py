"""Fault tolerance with real processes: a worker killed by SIGKILL in the middle of a trial,
and Ctrl-C (SIGINT) stopping a sweep that a re-run then resumes."""

from __future__ import annotations

import os
import signal

import pytest
from optuna.trial import TrialState

import bench.sweep
from tests.support.sweep import (
    BASE,
    SLOW_TRIAL,
    children,
    enter_workdir,
    load,
    parents,
    running_mid_trial,
    runs_of,
    sqlite,
    start,
    tune_script,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_sigkilled_worker_is_replaced_and_its_trial_retried(tmp_path, monkeypatch):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    overrides = [*BASE, *SLOW_TRIAL, f"tracking.uri={mlflow_uri}"]
    script = tune_script(workdir, (
        f"{overrides!r}, 'recurrent', study_name='kill', storage={storage!r}, n_trials=3, "
        "n_jobs=2, pruner='none', seed=0, heartbeat_interval=1, grace_period=5"
    ))
    proc = start(script, workdir)
    try:
        victim = wait_for(lambda: running_mid_trial(storage, "kill"), 150,
                          "a trial in the middle of training", proc)
        os.kill(victim.user_attrs["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    trials = load(storage, "kill").get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["pid"] != victim.user_attrs["pid"]  # done by the live worker
    runs = runs_of(mlflow_uri, "kill")
    kids = {}
    for r in children(runs):
        kids.setdefault(int(r.data.tags["optuna_trial"]), []).append(r)
    assert all(len(v) == 1 for v in kids.values()) and sorted(kids) == [t.number for t in trials]
    # The sweep saw its worker die: the trial was queued again at once (not after the
    # heartbeat grace period), its run closed, and the worker replaced.
    assert kids[victim.number][0].info.status == "FAILED"
    assert "died" in kids[victim.number][0].data.tags["error"]
    assert kids[retry.number][0].data.tags["retry_of"] == str(victim.number)
    assert "killed by SIGKILL" in out and "replaced" in out
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parents(runs)[0].info.status == "FINISHED"


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, monkeypatch):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    overrides = [*BASE, *SLOW_TRIAL, f"tracking.uri={mlflow_uri}"]
    script = tune_script(workdir, (
        f"{overrides!r}, 'recurrent', study_name='intr', storage={storage!r}, n_trials=2, "
        "pruner='none', seed=0, heartbeat_interval=1"
    ))
    proc = start(script, workdir)
    try:
        victim = wait_for(lambda: running_mid_trial(storage, "intr"), 150,
                          "a trial in the middle of training", proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    trials = load(storage, "intr").get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.params == trials[victim.number].params
    runs = runs_of(mlflow_uri, "intr")
    (killed_run,) = [r for r in children(runs)
                     if r.data.tags["optuna_trial"] == str(victim.number)]
    assert killed_run.info.status == "KILLED"
    (parent,) = parents(runs)
    assert parent.info.status == "KILLED"

    # The same command again: the interrupted configuration runs first, the study completes.
    study = bench.sweep.tune(overrides, "recurrent", study_name="intr", storage=storage,
                             n_trials=2, pruner="none", seed=0, heartbeat_interval=1)
    trials = study.get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert trials[queued.number].state == TrialState.COMPLETE
    assert trials[queued.number].system_attrs["failed_trial"] == victim.number
    runs = runs_of(mlflow_uri, "intr")
    assert [p.info.run_id for p in parents(runs)] == [parent.info.run_id]
    assert parents(runs)[0].info.status == "FINISHED"
