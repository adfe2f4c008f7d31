"""Shared fixtures: composing the real Hydra config tree and a private MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
