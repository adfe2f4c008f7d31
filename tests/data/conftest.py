"""Every data test runs offline (``BENCH_OFFLINE=1``) with its own preprocessing cache, so
no test reaches the network or reuses another's cache by accident; the download tests
switch the network back on and point the URLs at a server on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.data import Server


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "preprocessed"))


@pytest.fixture
def real_data_dir() -> Path:
    d = os.environ.get("BENCH_DATA_DIR")
    if not d:
        pytest.skip("real-data test: set BENCH_DATA_DIR to the folder holding the genuine "
                    "datasets (e.g. BENCH_DATA_DIR=../shared/data) to run it")
    return Path(d).expanduser().resolve()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    s = Server()
    yield s
    s.close()
