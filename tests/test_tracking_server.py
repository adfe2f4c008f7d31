"""A tracking server that is down fails a run or a sweep within seconds, in one message;
one that answers, whatever it answers, is taken as reachable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from bench import errors, tracking
from bench.stores import StoreAddress
from tests.support import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, cwd) -> tuple[subprocess.CompletedProcess, float]:
    # bench's own HTTP retry defaults, not a test's: no MLFLOW_HTTP_* from outside
    env = {k: v for k, v in os.environ.items()
           if k != errors.FULL_ERROR_ENV and not k.startswith("MLFLOW_HTTP_")}
    env["PYTHONPATH"] = str(ROOT)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    return p, time.monotonic() - t0


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_a_dead_server_fails_fast_in_one_message(kind, tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    args = ["trainer=smoke", "dataset=synthetic", f"tracking.uri={uri}"]
    if kind == "sweep":
        args = ["-m", *args, "+sweep=default", "hydra.sweeper.n_trials=1"]
    p, seconds = _cli(*args, cwd=tmp_path)
    assert p.returncode == errors.EXIT_CODE
    assert p.stderr.strip().splitlines() == [
        f"error: MLflow tracking server {uri} is unreachable (connection refused); start it "
        "or set tracking.uri",
        f"(add {errors.VERBOSE_FLAG} or set {errors.FULL_ERROR_ENV}=1 to see the traceback)"]
    # MLflow's own retries would wait minutes (over two with its defaults); what is left is the
    # interpreter's start, seconds on an idle machine, kept well apart from those even on a
    # loaded one (the check comes before torch and Lightning load)
    assert seconds < 90
    assert not (tmp_path / "optuna.db").exists()  # the sweep stopped before its study


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_server_that_answers_anything_is_reachable():
    server = HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracking.check_reachable(StoreAddress.tracking(f"http://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
        server.server_close()


def test_mlflow_http_retries_are_bounded_by_default():
    import mlflow.environment_variables as env

    for name, value in tracking.HTTP_DEFAULTS.items():
        if name not in os.environ or os.environ[name] == value:
            assert getattr(env, name).get() == int(value)
    assert int(tracking.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3
