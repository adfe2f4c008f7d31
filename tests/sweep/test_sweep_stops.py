"""Every way a run, a sweep or a study ends: the exit status a scheduler reads, and nothing
left RUNNING in Optuna or MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from bench import tracking
from bench.stores import StoreAddress
from bench.sweep import recovery
from bench.sweep.settings import SweepSettings
from bench.sweep.storage import open_storage
from tests.support.sweep import (
    BASE,
    ROOT,
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
EXPECTED = {signal.SIGTERM: 143, signal.SIGINT: 130}


def _all_runs(uri: str) -> list:
    # through bench's opener, which makes a new store's schema under the lock the run's
    # process takes too (a bare MlflowClient racing it would leave the schema half made)
    client = tracking.client_for(StoreAddress.tracking(uri))
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, max_results=1000) if exps else []


def _running_run(uri: str):
    """A RUNNING MLflow run that has logged at least one epoch."""
    try:
        for r in _all_runs(uri):
            if r.info.status == "RUNNING" and any(k.startswith("val/") for k in r.data.metrics):
                return r
    except Exception:   # the store is being created
        return None
    return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" in status.read_text()


# A run that writes its metrics after every epoch (tracking.flush_s=0), so its first epoch in
# MLflow says it is mid-training, and that lasts long enough on a fast machine as on a slow
# one for the signal to find it there; it never runs to the end.
LONG_RUN = [*SLOW_TRIAL, "trainer.max_epochs=300", "tracking.flush_s=0"]


def _stopped_mid_run(args: list[str], cwd: Path, uri: str, sig: int):
    """Starts ``python <args>``, sends ``sig`` once a run is mid-training; (process, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _running_run(uri), 150, "a run in the middle of training", proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_single_run_stopped_by_a_signal_exits_128_plus_signal(tmp_path, sig):
    uri = sqlite(tmp_path, "mlflow.db")
    proc, out = _stopped_mid_run(
        ["-m", "bench", *BASE, *LONG_RUN, f"tracking.uri={uri}",
         "trainer.enable_progress_bar=false"], tmp_path, uri, sig)
    assert proc.returncode == EXPECTED[sig], out
    (run,) = _all_runs(uri)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith(f"stopped by {sig.name}")
    assert f"stopped by {sig.name}" in out and "Traceback" not in out


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_sweep_stopped_by_sigterm_exits_143_and_leaves_nothing_running(tmp_path, monkeypatch,
                                                                      n_jobs):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    overrides = [*BASE, *SLOW_TRIAL, f"tracking.uri={uri}"]
    script = tune_script(workdir, (
        f"{overrides!r}, 'recurrent', study_name='term', storage={storage!r}, n_trials=4, "
        f"n_jobs={n_jobs}, pruner='none', seed=0, heartbeat_interval=1"
    ))
    proc = start(script, workdir)
    try:
        victim = wait_for(lambda: running_mid_trial(storage, "term"), 150,
                          "a trial in the middle of training", proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    trials = load(storage, "term").get_trials()
    # The workers ended with the sweep: none runs on without its parent.
    wait_for(lambda: all(_gone(t.user_attrs["pid"]) for t in trials if "pid" in t.user_attrs),
             20, "the workers to end")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[victim.number].state == TrialState.FAIL
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert [q.system_attrs["failed_trial"] for q in queued].count(victim.number) == 1
    runs = runs_of(uri, "term")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = parents(runs)
    assert parent.info.status == "KILLED" and parent.data.tags["error"] == "stopped by SIGTERM"
    killed = [r for r in children(runs) if r.data.tags["optuna_trial"] == str(victim.number)]
    assert [r.info.status for r in killed] == ["KILLED"]


def test_sweep_that_fails_closes_its_parent_failed_and_exits_1(tmp_path, monkeypatch):
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    space = workdir / "poison.yaml"
    # SGD with lr 1e38 overflows the weights: every trial's loss becomes NaN.
    space.write_text("params:\n  optim.lr: {type: categorical, choices: [1.0e38]}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "-m", *BASE, f"tracking.uri={uri}", "optim.name=sgd",
         "hydra/sweeper=bench_optuna", f"hydra.sweeper.space={space}",
         f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=poison",
         "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "hydra.sweeper.sampler=random"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert any("0/2 trials finished" in line and "max_failures" in line for line in err), err
    assert any(line.startswith("Resume with: python -m bench -m") for line in err), err
    assert "Traceback" not in proc.stderr
    (parent,) = parents(runs_of(uri, "poison"))
    assert parent.info.status == "FAILED" and "max_failures" in parent.data.tags["error"]


def test_a_process_killed_between_queueing_and_failing_loses_nothing(tmp_path):
    """The one window where a lost trial used to vanish: its retry is queued, and the
    process dies before the trial is marked failed. The next recovery only finishes the job."""
    storage = sqlite(tmp_path, "optuna.db")
    study = optuna.create_study(study_name="window", storage=storage)
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    trial.set_user_attr("pid", 2 ** 22 + 1)   # a worker that no longer exists
    trial.set_user_attr("host", "elsewhere")
    script = tmp_path / "recover.py"
    script.write_text(textwrap.dedent(f"""
        import optuna
        from bench.sweep import recovery
        from bench.sweep.settings import SweepSettings
        from bench.stores import StoreAddress
        from bench.sweep.storage import open_storage
        storage = open_storage(StoreAddress.optuna({storage!r}))
        study = optuna.load_study(study_name="window", storage=storage)
        settings = SweepSettings(study_name="window", storage={storage!r})
        recovery.requeue(study, storage, settings, [{trial._trial_id}], "worker died")
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), recovery.FAILPOINT_ENV: "requeued"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    trials = load(storage, "window").get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.WAITING]

    # Whoever recovers next (here: this process) fails it without queueing a second retry.
    rdb = open_storage(StoreAddress.optuna(storage))
    study = optuna.load_study(study_name="window", storage=rdb)
    settings = SweepSettings(study_name="window", storage=storage)
    assert recovery.requeue(study, rdb, settings, [trial._trial_id], "worker died") == [0]
    assert recovery.requeue(study, rdb, settings, [trial._trial_id], "worker died") == []
    trials = load(storage, "window").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params
    assert recovery.lost_for_good(trials) == []


def test_study_stopped_by_sigterm_exits_143_and_closes_its_session(tmp_path):
    uri = sqlite(tmp_path, "mlflow.db")
    slow = ",".join(["trainer=smoke", *LONG_RUN])
    proc, out = _stopped_mid_run(
        ["-m", "bench.study", str(ROOT / "tests/study/study_smoke.yaml"),
         f"tracking_uri={uri}", "seeds=1", "tuning.n_trials=0", "architectures.cells=[gru]",
         f"overrides=[{slow}]", "datasets.synthetic_series.enabled=false", "--no-record"],
        tmp_path, uri, signal.SIGTERM)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "Resume with: python -m bench.study" in out
    runs = _all_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (session,) = [r for r in runs if r.data.tags.get("phase") == "session"]
    assert session.info.status == "KILLED"
    assert session.data.tags["error"] == "stopped by SIGTERM"


def test_a_worker_whose_sweep_is_gone_stops_before_loading_anything():
    """The parent check comes before the heavy imports: a worker started for a sweep that died
    meanwhile (here: a pid no process can have) stops at once, and never loads torch."""
    gone = 2 ** 22 + 1
    code = ("import sys; from bench.sweep import worker_entry as w; "
            f"rc = w.main(['payload.json', '0', '{gone}']); "
            "assert 'torch' not in sys.modules and 'lightning' not in sys.modules; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert f"worker 0: its sweep (pid {gone}) is gone; not starting" in p.stderr
