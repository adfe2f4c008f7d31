"""Scratch folders: a run outside a Hydra job and a sweep's worker payload leave nothing in
the temp folder, however they end, and a folder left by a killed process goes at the next
start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from bench import scratch
from bench.train import NonFiniteLoss, run
from tests.support import ROOT


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """An empty temp folder of the test's own (``tempfile`` caches the one it found)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


class RootSeen(Callback):
    def on_fit_start(self, trainer, pl_module):
        self.root = Path(trainer.default_root_dir)
        assert self.root.is_dir()


@pytest.mark.parametrize("outcome", ["finished", "failed"])
def test_a_run_outside_a_job_removes_its_scratch_folder(outcome, make_cfg, mlflow_uri,
                                                        private_tmp):
    seen = RootSeen()
    if outcome == "finished":
        result = run(make_cfg("dataset=synthetic"), callbacks=[seen])
        assert result.checkpoint is None  # its folder is gone; no path that points nowhere
        tags = MlflowClient(mlflow_uri).get_run(result.run_id).data.tags
        assert "checkpoint" not in tags
    else:
        with pytest.raises(NonFiniteLoss):
            run(make_cfg("dataset=synthetic", "dataset.nan_inputs=true"), callbacks=[seen])
    assert seen.root.parent == private_tmp and seen.root.name.startswith("bench-run-")
    assert not seen.root.exists()
    assert list(private_tmp.glob("bench-run-*")) == []


def test_a_folder_left_by_a_killed_process_goes_at_the_next_start(private_tmp):
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal; from bench import scratch; "
         "print(scratch.make('bench-sweep'), flush=True); os.kill(os.getpid(), signal.SIGKILL)"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    dead = Path(killed.stdout.strip())
    assert dead.parent == private_tmp and dead.is_dir()
    # folders whose owner cannot be proven gone stay: another machine's, one without owner
    elsewhere = private_tmp / "bench-sweep-elsewhere"
    elsewhere.mkdir()
    owner = json.loads((dead / scratch.OWNER_FILE).read_text())
    (elsewhere / scratch.OWNER_FILE).write_text(json.dumps({**owner, "host": "another-host"}))
    unowned = private_tmp / "bench-sweep-unowned"
    unowned.mkdir()
    other_kind = private_tmp / "bench-run-dead"
    other_kind.mkdir()
    (other_kind / scratch.OWNER_FILE).write_text(json.dumps(owner))

    with pytest.raises(RuntimeError), scratch.folder("bench-sweep") as mine:
        assert mine.is_dir() and not dead.exists()
        assert scratch.remove_stale("bench-sweep") == []  # a live owner's folder stays
        raise RuntimeError("the sweep failed")
    assert not mine.exists()
    assert elsewhere.is_dir() and unowned.is_dir() and other_kind.is_dir()
