"""Two independent worker processes (as on two machines) share one study in PostgreSQL and
log to one MLflow server: exact trial count, unique numbers, one child run per trial, one
parent run, and the database password nowhere in what they print or record."""

from __future__ import annotations

import uuid

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench.stores import StoreAddress
from tests.support.sweep import (
    BASE,
    children,
    enter_workdir,
    load,
    parents,
    runs_of,
    server_urls,
    start,
    tune_script,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_two_workers_share_a_postgres_study(tmp_path, monkeypatch):
    pg_url, mlflow_url = server_urls()
    workdir = enter_workdir(tmp_path, monkeypatch)
    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    name = f"shared-{uuid.uuid4().hex[:8]}"
    experiment = f"sweeps-{name}"
    overrides = [*BASE, f"tracking.uri={mlflow_url}", f"tracking.experiment={experiment}"]
    call = (f"{overrides!r}, 'recurrent', study_name={name!r}, storage={pg_url!r}, "
            "n_trials=6, n_jobs=1, pruner='median', seed=0, heartbeat_interval=2")
    # Two separate `tune` processes started together: they race to create the study and
    # its MLflow parent run, then split the trials between them.
    procs = [start(tune_script(workdir, call, f"worker{i}.py"), workdir) for i in range(2)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        outputs.append(out)
        assert p.returncode == 0, out
    study = load(StoreAddress.optuna(pg_url).connect(), name)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    errors = [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 6, errors
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes worked

    runs = runs_of(mlflow_url, name, experiment)
    (parent,) = parents(runs)
    kids = {}
    for r in children(runs):
        kids.setdefault(int(r.data.tags["optuna_trial"]), []).append(r)
    assert sorted(kids) == sorted(numbers)
    assert all(len(v) == 1 for v in kids.values())
    assert all(v[0].data.tags["mlflow.parentRunId"] == parent.info.run_id for v in kids.values())

    # The password: not in the logs, not in any param/tag, not in the parent's summary.
    assert password not in "".join(outputs)
    for run in runs:
        assert password not in repr(run.data.params) + repr(run.data.tags)
    assert "***@" in parent.data.tags["optuna_storage"]  # where the storage URL is recorded
    client = MlflowClient(mlflow_url)
    summary = client.download_artifacts(parent.info.run_id, "summary.md", str(workdir))
    with open(summary) as fh:
        assert password not in fh.read()
    assert password not in repr(study.user_attrs)
