"""End-to-end sweeps on the synthetic dataset with the smoke trainer: pruning, the MLflow
tree, resuming, and a trial whose loss becomes NaN."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

import bench.sweep
from tests.support.sweep import (
    BASE,
    children,
    enter_workdir,
    load,
    parents,
    runs_of,
    sqlite,
)

pytestmark = pytest.mark.slow


def test_pruned_sweep_agrees_with_mlflow_and_resumes(tmp_path, monkeypatch):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    overrides = [*BASE, f"tracking.uri={mlflow_uri}"]
    pruner = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    study = bench.sweep.tune(overrides, "recurrent", study_name="s6", storage=storage,
                             n_trials=6, pruner=pruner, seed=0)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 6 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states

    runs = runs_of(mlflow_uri, "s6")
    (parent,) = parents(runs)
    kids = {int(r.data.tags["optuna_trial"]): r for r in children(runs)}
    assert sorted(kids) == list(range(6))
    for t in trials:
        run = kids[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert (run.data.tags.get("pruned") == "true") == (t.state == TrialState.PRUNED)
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
        # Partial curves kept: one val point per reported epoch.
        history = MlflowClient(mlflow_uri).get_metric_history(run.info.run_id, "val/accuracy")
        assert len(history) >= len(t.intermediate_values) >= 1
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["epochs_trained"] == len(t.intermediate_values)
    assert parent.info.status == "FINISHED"
    assert float(parent.data.metrics["best_value"]) == pytest.approx(study.best_value)
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    client = MlflowClient(mlflow_uri)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "best_params.json", "trials.csv", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/param_importances.png"} <= plots

    # Re-running tops the same study up to the new target, under the same parent run.
    study = bench.sweep.tune(overrides, "recurrent", study_name="s6", storage=storage,
                             n_trials=8, pruner=pruner, seed=0)
    assert len(study.get_trials()) == 8
    assert len(optuna.get_all_study_names(storage)) == 1
    runs = runs_of(mlflow_uri, "s6")
    assert [p.info.run_id for p in parents(runs)] == [parent.info.run_id]
    assert len(children(runs)) == 8
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id


def test_nan_loss_fails_only_that_trial(tmp_path, monkeypatch):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    space = workdir / "poison.yaml"
    # SGD with lr 1e38 overflows the weights: the training loss becomes NaN.
    space.write_text("params:\n  optim.lr: {type: categorical, choices: [0.05, 1.0e38]}\n")
    study = optuna.create_study(study_name="nan", storage=storage, direction="maximize")
    study.enqueue_trial({"optim.lr": 1.0e38})
    study = bench.sweep.tune([*BASE, f"tracking.uri={mlflow_uri}", "optim.name=sgd"],
                             str(space), study_name="nan", storage=storage, n_trials=2,
                             sampler="random", pruner="none", seed=0, max_failures=20)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # whatever the sampler draws after the enqueued trial, only the poisoned ones fail
    assert len(complete) == 2 and failed and failed[0].number == 0
    assert all(t.params["optim.lr"] == 1.0e38 for t in failed)
    assert all(t.params["optim.lr"] == 0.05 for t in complete)
    assert all("NonFiniteLoss" in t.user_attrs["error"] for t in failed)
    kids = {int(r.data.tags["optuna_trial"]): r for r in children(runs_of(mlflow_uri, "nan"))}
    for t in trials:
        expected = "FAILED" if t.state == TrialState.FAIL else "FINISHED"
        assert kids[t.number].info.status == expected
    assert load(storage, "nan").best_value == max(t.value for t in complete)


def test_a_trial_reaches_its_run_as_arguments(tmp_path, monkeypatch):
    """The worker hands a trial to bench.train.run with its pruning callback, tags and
    parent: each epoch is reported to the trial, the run is linked to the trial and tagged
    with it, and no trial state is left behind in the process or the run's config."""
    workdir = enter_workdir(tmp_path, monkeypatch)
    from bench.config import compose
    from bench.stores import StoreAddress
    from bench.sweep import space as space_mod
    from bench.sweep import worker
    from bench.sweep.settings import SweepSettings
    from bench.sweep.storage import open_storage

    storage_url, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    storage = open_storage(StoreAddress.optuna(storage_url))
    study = optuna.create_study(study_name="direct", storage=storage, direction="maximize",
                                pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    base = compose([*BASE, f"tracking.uri={mlflow_uri}"])
    settings = SweepSettings(study_name="direct", storage=storage_url, heartbeat_interval=0,
                             pruner={"name": "none"})
    state = worker.run_trial(study, storage, trial, base, settings,
                             space_mod.load("recurrent"))
    assert state == "COMPLETE"
    frozen = load(storage_url, "direct").get_trials()[trial.number]
    assert sorted(frozen.intermediate_values) == [0, 1]
    assert frozen.intermediate_values[1] == pytest.approx(frozen.user_attrs["val/accuracy"])
    run = MlflowClient(mlflow_uri).get_run(frozen.user_attrs["mlflow_run_id"])
    assert run.data.tags["optuna_study"] == "direct" and run.data.tags["optuna_trial"] == "0"
    assert run.data.tags["sweep_role"] == "trial" and run.info.status == "FINISHED"
    config = MlflowClient(mlflow_uri).download_artifacts(run.info.run_id, "config.yaml",
                                                         str(tmp_path))
    assert "trial" not in OmegaConf.load(config) and "trial" not in base


def test_command_line_sweep_with_two_workers(tmp_path, monkeypatch):
    """`python -m bench -m ... +sweep=default` from a folder outside the checkout, with bench
    installed as the README installs it (editable): Hydra finds the plugin, the sweeper
    starts two worker processes, the study and MLflow agree."""
    workdir = enter_workdir(tmp_path, monkeypatch)
    import importlib.metadata
    import os
    import subprocess
    import sys

    from tests.support.sweep import ROOT

    mlflow_uri = sqlite(workdir, "mlflow.db")
    cmd = [sys.executable, "-m", "bench", "-m", *BASE, f"tracking.uri={mlflow_uri}",
           "+sweep=default", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
           "hydra.sweeper.study_name=cli", "hydra.sweeper.pruner.name=none"]
    env = dict(os.environ)
    try:   # installed: nothing on the path points into the checkout, as for a user
        importlib.metadata.distribution("bench")
        env.pop("PYTHONPATH", None)
    except importlib.metadata.PackageNotFoundError:
        env["PYTHONPATH"] = str(ROOT)
    env.pop("BENCH_OPTUNA_STORAGE", None)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # each worker ends with one line a person reads, not a machine's JSON
    assert out.count(" done; trials it ran: ") == 2, out
    assert "BENCH_WORKER_REPORT" not in out and "LeafSpec" not in out
    study = load(sqlite(workdir, "optuna.db"), "cli")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    runs = runs_of(mlflow_uri, "cli")
    assert len(parents(runs)) == 1 and len(children(runs)) == 4


def test_workers_as_launcher_jobs(tmp_path, monkeypatch):
    """With a non-basic Hydra launcher each job is a worker (the SLURM path, here through
    submitit's local executor): the jobs share the study and the parent is summarised."""
    workdir = enter_workdir(tmp_path, monkeypatch)
    import os
    import subprocess
    import sys

    from tests.support.sweep import ROOT

    mlflow_uri = sqlite(workdir, "mlflow.db")
    cmd = [sys.executable, "-m", "bench", "-m", *BASE, f"tracking.uri={mlflow_uri}",
           "+sweep=default", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
           "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
           "hydra.sweeper.study_name=jobs", f"hydra.sweep.dir={workdir / 'multirun'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BENCH_OPTUNA_STORAGE", None)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = load(sqlite(workdir, "optuna.db"), "jobs").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    (parent,) = parents(runs_of(mlflow_uri, "jobs"))
    assert parent.info.status == "FINISHED" and "best_value" in parent.data.metrics
    assert (workdir / "multirun" / "sweep_jobs.json").is_file()
