"""Shared fixtures: composing the real Hydra config tree and a private MLflow store."""

from __future__ import annotations

import os
import sys

# One OpenMP thread per process unless told otherwise: the tests run one process per core
# (pytest -n auto), and the runs and sweep workers they start inherit it. The models here are
# tiny, so a second thread gains nothing, and threads that spin-wait against the other
# processes' cost a quarter of the suite's CPU time (measured on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.support import compose_cfg


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store per test, in a private working directory."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_cfg(mlflow_uri):
    def make(*overrides: str):
        return compose_cfg([f"tracking.uri={mlflow_uri}", "trainer=smoke", *overrides])

    return make


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real datasets (``BENCH_DATA_DIR``); tests that need them are skipped without it."""
    env = os.environ.get("BENCH_DATA_DIR")
    if not env:
        pytest.skip("real-data test: set BENCH_DATA_DIR (e.g. ../shared/data) to run it")
    path = Path(env).expanduser().resolve()
    if not path.is_dir():
        pytest.skip(f"real-data test: BENCH_DATA_DIR={env} is not a directory")
    return path


def pytest_collection_modifyitems(config, items):
    """The tests marked ``slow`` first: with the tests spread over workers (``-n auto --dist
    worksteal``, which lets an idle worker take queued tests from a busy one), a long test
    drawn last keeps one worker busy while the others have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
