"""Several processes starting at the same moment on fresh SQLite files (the MLflow store and
the Optuna storage) all start: each file's schema is created once, by whichever comes first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.support import ROOT

STARTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import optuna
    from bench import tracking
    from bench.stores import StoreAddress
    from bench.sweep.storage import open_storage

    folder = Path(sys.argv[1])
    print("ready", flush=True)
    while not (folder / "go").exists():
        time.sleep(0.002)
    tracking.open_experiment(StoreAddress.tracking(f"sqlite:///{folder}/mlflow.db"), "together")
    optuna.create_study(study_name="together", load_if_exists=True,
                        storage=open_storage(StoreAddress.optuna(f"sqlite:///{folder}/optuna.db")))
""")


@pytest.mark.slow
def test_processes_started_together_on_fresh_files_all_start(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        for p in procs:  # all imported and waiting, then released at once
            assert p.stdout.readline().strip() == "ready"
        (tmp_path / "go").touch()
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()].count("together") == 1
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/optuna.db")]
    assert names == ["together"]
