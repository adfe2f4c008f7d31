"""Helpers shared by the sweep tests: stores in a private directory, MLflow queries, and
runners for real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
BASE = ["dataset=synthetic", "trainer=smoke", "tracking.experiment=sweeps"]
# Trials long enough (20 epochs of ~57 batches, a few seconds even on an idle machine) to be
# caught in the middle by a test polling the storage.
SLOW_TRIAL = ["trainer.max_epochs=20", "trainer.limit_train_batches=null",
              "trainer.early_stopping_patience=null", "dataset.n_samples=3000"]


def enter_workdir(tmp_path: Path, monkeypatch) -> Path:
    """Runs the test from ``tmp_path``: default stores (optuna.db, mlflow.db) land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def server_urls() -> tuple[str, str]:
    """PostgreSQL and MLflow server URLs from .ci/services.sh, or skip with the reason."""
    pg, ml = os.environ.get("BENCH_TEST_PG_URL"), os.environ.get("BENCH_TEST_MLFLOW_URL")
    if not pg or not ml:
        pytest.skip("server test: BENCH_TEST_PG_URL / BENCH_TEST_MLFLOW_URL unset; "
                    "run `. .ci/services.sh` (or .ci/run) to start PostgreSQL and MLflow")
    return pg, ml


def sqlite(workdir: Path, name: str) -> str:
    return f"sqlite:///{workdir / name}"


def runs_of(tracking_uri: str, study: str, experiment: str = "sweeps") -> list:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.optuna_study = '{study}'",
                              max_results=1000)


def children(runs: list) -> list:
    return [r for r in runs if r.data.tags.get("sweep_role") == "trial"]


def parents(runs: list) -> list:
    return [r for r in runs if r.data.tags.get("sweep_role") == "parent"]


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def tune_script(workdir: Path, call: str, name: str = "tune_job.py") -> Path:
    """A script calling ``bench.sweep.tune(...)``; a stop exits 128 + signal like the CLI."""
    script = workdir / name
    script.write_text(textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        import bench.sweep
        from bench import interrupt
        try:
            bench.sweep.tune({call})
        except KeyboardInterrupt:
            sys.exit(interrupt.exit_code())
    """))
    return script


def start(script: Path, workdir: Path, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, str(script)], cwd=workdir, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (code {proc.returncode}) before {what}:\n"
                                 + (proc.stdout.read() if proc.stdout else ""))
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def running_mid_trial(storage: str, name: str):
    """A RUNNING trial that has reported at least one epoch (so it is mid-training)."""
    try:
        study = load(storage, name)
    except KeyError:
        return None
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values \
                and "pid" in t.user_attrs:
            return t
    return None
