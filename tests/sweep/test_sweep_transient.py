"""A tracking server that goes away for a while costs a trial its run, not the sweep a failure:
the trial is queued again, the worker waits for the server before it takes the next one, and
the sweep ends with every trial, even with ``max_failures=1``."""

from __future__ import annotations

import os
import threading
import time
import uuid

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

import bench.sweep
from bench.stores import StoreAddress
from bench.sweep import recovery
from bench.sweep.storage import open_storage
from tests.support import MlflowProxy
from tests.support.sweep import BASE, SLOW_TRIAL, enter_workdir, load, sqlite

pytestmark = [pytest.mark.slow, pytest.mark.server]
OUTAGE_S = 12.0


def _mid_trial(rdb) -> bool:
    try:
        study = optuna.load_study(study_name="flaky", storage=rdb)
    except KeyError:
        return False
    return any(t.state == TrialState.RUNNING and t.intermediate_values
               for t in study.get_trials(deepcopy=False))


def test_a_tracking_outage_is_waited_out_and_costs_one_retry(tmp_path, monkeypatch, caplog):
    target = os.environ.get("BENCH_TEST_MLFLOW_URL")
    if not target:
        pytest.skip("server test: BENCH_TEST_MLFLOW_URL unset; run `. .ci/services.sh` first")
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage = sqlite(workdir, "optuna.db")
    # MLflow's own request retries would ride out a short outage; none here, so it shows.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    experiment = f"transient-{uuid.uuid4().hex[:8]}"
    with MlflowProxy(target) as proxy:
        def outage():
            while not (workdir / "optuna.db").exists():   # created once, by the sweep
                time.sleep(0.2)
            rdb = open_storage(StoreAddress.optuna(storage))
            while not _mid_trial(rdb):
                time.sleep(0.2)
            proxy.down_for(OUTAGE_S)   # long enough to spend every retry if nobody waited

        t = threading.Thread(target=outage, daemon=True)
        t.start()
        study = bench.sweep.tune(
            [*BASE, *SLOW_TRIAL, "trainer.max_epochs=6", f"tracking.uri={proxy.url}",
             f"tracking.experiment={experiment}"],
            "recurrent", study_name="flaky", storage=storage, n_trials=2, pruner="none",
            seed=0, max_failures=1, heartbeat_interval=1)
        t.join(timeout=5)
    assert proxy.failed, "the outage never hit a request"
    assert any("answers again after" in r.getMessage() for r in caplog.records)
    trials = study.get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    (hit,) = [t for t in trials if t.state == TrialState.FAIL]
    assert "error" not in hit.user_attrs   # not a failure of the configuration
    assert hit.user_attrs[recovery.LOST_ATTR].startswith("tracking error")
    (retry,) = [t for t in trials if recovery.retry_history(t)[-1:] == [hit.number]]
    assert retry.state == TrialState.COMPLETE and retry.params == hit.params
    # the run the outage cut is not left RUNNING
    client = MlflowClient(target)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert load(storage, "flaky").best_trial.state == TrialState.COMPLETE


def test_an_unreachable_database_is_one_line_naming_the_storage(monkeypatch):
    """A PostgreSQL storage nobody listens on (port 1): the user gets which storage and why,
    the password masked, not SQLAlchemy's chain of tracebacks."""
    from bench.errors import StorageError, message

    monkeypatch.setenv("OPTUNA_STORAGE_PASSWORD", "s3cret")
    address = StoreAddress.optuna("postgresql://bench:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(StorageError) as err:
        open_storage(address)
    said = message(err.value)
    assert said.startswith("error: cannot open the Optuna storage postgresql")
    assert "127.0.0.1:1/nowhere: connection refused (is it running?)" in said
    assert "s3cret" not in said and len(said.splitlines()) == 2
