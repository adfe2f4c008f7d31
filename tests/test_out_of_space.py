"""A full disk: one message naming the file and the file system, a non-zero exit, the MLflow
run closed FAILED when its store can still be written (and said so when it cannot), and no
truncated checkpoint under a checkpoint's name.

The full-disk tests use a real 1 MiB tmpfs, filled; they need root to mount it and are
skipped (with the reason) where it cannot be mounted.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from bench import errors
from bench.train import AtomicCheckpointIO, run
from tests.support import ROOT


def _fill(folder: Path, keep_kib: int = 0) -> None:
    """Leaves about ``keep_kib`` KiB free on the file system of ``folder``."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(free - keep_kib * 1024, 0))
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _tmpfs(tmp_path: Path, size: str):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("full-disk test: mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"full-disk test: cannot mount a tmpfs here ({mounted.stderr.strip()})")
    yield disk
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    yield from _tmpfs(tmp_path, "1m")


@pytest.fixture
def roomier_disk(tmp_path) -> Path:
    """Room for an MLflow store's schema (about 1 MiB) and then some."""
    yield from _tmpfs(tmp_path, "4m")


# -- the message ---------------------------------------------------------------------------


def test_a_full_disk_anywhere_is_one_known_message(tmp_path):
    target = tmp_path / "outputs" / "config.yaml"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    assert errors.is_known(full)
    text = errors.message(full)
    assert text.splitlines()[0] == (f"error: out of space writing a file {target}: the file "
                                    f"system at {errors.mount_point(tmp_path)} is full; free "
                                    "space there")
    assert len(text.splitlines()) == 2
    # SQLite's wording, as the driver raises it under another error
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as e:
            raise RuntimeError("the store failed") from e
    except RuntimeError as e:
        assert errors.is_known(e) and "out of space writing an SQLite database" in errors.message(e)
    assert not errors.is_known(OSError(errno.EACCES, "Permission denied", str(target)))
    assert not errors.is_known(RuntimeError("database is locked"))


class FailsWriting(Callback):
    """An ENOSPC at the file-write boundary of the checkpoint, as the OS reports it."""

    def on_train_epoch_end(self, trainer, pl_module):
        self.path = Path(trainer.default_root_dir) / "checkpoints" / "best-x.ckpt"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))


def test_a_run_that_hits_a_full_disk_ends_in_one_error_and_a_failed_record(make_cfg,
                                                                          mlflow_uri):
    hit = FailsWriting()
    with pytest.raises(errors.OutOfSpaceError) as e:
        run(make_cfg("dataset=synthetic"), callbacks=[hit])
    client = MlflowClient(mlflow_uri)
    (rec,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert rec.info.status == "FAILED"
    assert "No space left on device" in rec.data.tags["error"]
    assert str(e.value) == (
        f"out of space writing the checkpoint {hit.path}: the file system at "
        f"{errors.mount_point(hit.path)} is full; free space there or point TMPDIR "
        f"at a disk with room. The MLflow run {rec.info.run_id} was closed FAILED.")
    assert errors.is_known(e.value) and "\n" not in str(e.value)


# -- a real full disk ----------------------------------------------------------------------


def test_a_checkpoint_save_that_fills_the_disk_keeps_the_last_whole_one(small_disk):
    path = small_disk / "checkpoints" / "best-x.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.arange(1000.0)}, path)
    _fill(small_disk, keep_kib=64)
    with pytest.raises(OSError) as e:
        io.save_checkpoint({"w": torch.zeros(100_000)}, path)  # 400 KB
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["best-x.ckpt"]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(1000.0))


def bench_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != errors.FULL_ERROR_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "bench", "trainer=smoke", "dataset=synthetic",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("synthetic")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.mark.slow
def test_a_run_folder_on_a_full_disk(small_disk, tmp_path):
    """The run's folder (Hydra's, with its checkpoints) fills up; the store is elsewhere."""
    store = tmp_path / "mlflow.db"
    # room for Hydra's three config files (4 KiB pages) but not for the checkpoint (~17 KB)
    _fill(small_disk, keep_kib=20)
    p = bench_cli(f"tracking.uri=sqlite:///{store}", cwd=small_disk)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == errors.EXIT_CODE
    assert len(lines) < 15 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("error: out of space writing ")
    assert f"{small_disk}/" in lines[0] and f"file system at {small_disk} is full" in lines[0]
    if "No MLflow run was started" not in lines[0]:
        (rec,) = _runs(store)
        assert rec.info.status == "FAILED"
        assert f"The MLflow run {rec.info.run_id} was closed FAILED." in lines[0]
    # no half-written checkpoint: none left over, and any under the final name loads
    assert list(small_disk.rglob("*.partial")) == []
    for ckpt in small_disk.rglob("best-*.ckpt"):
        torch.load(ckpt, weights_only=True)


@pytest.mark.parametrize("keep_kib", [40, 100])
@pytest.mark.slow
def test_a_store_on_a_full_disk(small_disk, keep_kib):
    """The store fills up too: the run is closed FAILED if it still can be, or the message
    says it shows RUNNING (or Lightning's FINISHED) and how to close it."""
    store = small_disk / "mlflow.db"
    made = subprocess.run([sys.executable, "-c", "from bench import stores, tracking; tracking.open_experiment("
                           f"stores.StoreAddress.tracking('sqlite:///{store}'), 'synthetic')"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert made.returncode == 0
    _fill(small_disk, keep_kib=keep_kib)
    p = bench_cli(f"tracking.uri=sqlite:///{store}", cwd=small_disk)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == errors.EXIT_CODE
    assert len(lines) < 15 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("error: out of space writing ")
    assert f"file system at {small_disk} is full" in lines[0]
    if "No MLflow run was started" in lines[0]:
        return
    (rec,) = _runs(store)
    if f"The MLflow run {rec.info.run_id} was closed FAILED." in lines[0]:
        assert rec.info.status == "FAILED"
    else:
        assert (f"The MLflow run {rec.info.run_id} could not be closed: the store at {store} "
                f"is full; it shows {rec.info.status} until it is closed") in lines[0]
        assert f".set_terminated('{rec.info.run_id}', 'FAILED')" in lines[0]


def test_a_store_whose_creation_the_full_disk_cut_short_is_made_afresh(small_disk):
    """MLflow lays out a new store's tables one migration at a time; a full disk in between
    used to leave a file that failed every later open ("table _alembic_tmp_params already
    exists") until deleted by hand. It holds no runs, so the next open makes it again."""
    store = small_disk / "mlflow.db"
    code = ("from bench import stores, tracking; c = tracking.client_for(stores.StoreAddress."
            f"tracking('sqlite:///{store}')); print(len(c.search_experiments()))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _fill(small_disk, keep_kib=300)   # room for part of the schema only
    cut = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert cut.returncode != 0 and "OutOfSpaceError" in cut.stderr
    assert store.is_file()   # the half-made store
    (small_disk / "filler").unlink()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "1"   # the Default experiment: a whole, working store
    assert "was left half-made" in again.stderr and "made afresh" in again.stderr


@pytest.mark.slow
def test_a_study_whose_own_record_hits_a_full_disk(roomier_disk, tmp_path):
    """The study's session run is written outside any training run; a full disk there is the
    same one message, naming the store, with the command that resumes."""
    store = roomier_disk / "mlflow.db"
    made = subprocess.run([sys.executable, "-c", "from bench import stores, tracking; tracking.open_experiment("
                           f"stores.StoreAddress.tracking('sqlite:///{store}'), 'study-sessions')"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert made.returncode == 0
    _fill(roomier_disk, keep_kib=60)
    definition = ROOT / "tests" / "study" / "study_smoke.yaml"
    p = subprocess.run([sys.executable, "-m", "bench.study", str(definition),
                        f"tracking_uri=sqlite:///{store}",
                        f"tuning.storage=sqlite:///{tmp_path}/o.db"],
                       cwd=roomier_disk, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == errors.EXIT_CODE, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "[SQL:" not in p.stderr, p.stderr[-3000:]
    assert (f"error: out of space writing the MLflow store {store}: the file system at "
            f"{roomier_disk} is full") in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1].startswith("Resume with: python -m bench.study")


@pytest.mark.slow
def test_a_sweep_whose_storage_fills_up_stops_once_and_resumes(roomier_disk, tmp_path):
    """Worker processes that meet a full disk stop, each with one line, instead of crashing
    and being replaced until max_restarts; the sweep ends with one message and the command
    that resumes, and after the space is freed that command finishes the study."""
    disk = roomier_disk
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    storage = f"sqlite:///{disk}/o.db"
    subprocess.run([sys.executable, "-c", f"import optuna; optuna.create_study(storage='{storage}')"],
                   env=env, timeout=120, check=True, capture_output=True)
    _fill(disk, keep_kib=24)   # room for the study, not for all its trials
    args = [sys.executable, "-m", "bench", "-m", "dataset=synthetic", "trainer=smoke",
            "+sweep=default", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2",
            f"tracking.uri=sqlite:///{work}/mlflow.db", f"hydra.sweeper.storage={storage}"]
    p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == errors.EXIT_CODE, out[-3000:]
    assert "Traceback" not in out and "replaced" not in out, out[-3000:]
    stops = [x for x in out.splitlines() if "worker stops: out of space writing the Optuna "
             f"storage {disk}/o.db: the file system at {disk} is full" in x]
    assert 1 <= len(stops) <= 2, out[-3000:]   # one line per worker at most
    assert "Resume with: python -m bench -m" in p.stderr
    (disk / "filler").unlink()
    # the same sweep, one worker in process (quicker to start): it finishes the study
    again = subprocess.run([*args[:-3], "hydra.sweeper.n_jobs=1", *args[-2:]], cwd=work,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]

    (summary,) = [s for s in optuna.get_all_study_summaries(storage)
                  if s.study_name.startswith("synthetic")]
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") + states.count("PRUNED") == 8
    assert "RUNNING" not in states and "WAITING" not in states
