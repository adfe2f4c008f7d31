"""Helpers shared by test modules (importable by name, unlike a conftest)."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def compose_cfg(overrides: list[str] | None = None, config_dir: Path = CONF):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


class MlflowProxy(ThreadingHTTPServer):
    """A real HTTP hop in front of the test MLflow server: it forwards what carries the
    expected basic auth (401 otherwise; no user: no check), and answers 503 to the next
    ``fail_next`` requests, as a restarting server or an overloaded gateway would."""

    def __init__(self, target: str, user: str | None = None, password: str | None = None):
        self.target = target.rstrip("/")
        self.expected = None if user is None else (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        self.accepted, self.refused, self.failed = 0, [], []
        self.fail_next = 0
        self.down_until = 0.0   # time.monotonic() before which every request gets a 503
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def down_for(self, seconds: float) -> None:
        """An outage: the server behind answers nothing but 503 for ``seconds``."""
        self.down_until = time.monotonic() + seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: MlflowProxy
    _HOP = {"host", "authorization", "connection", "content-length", "transfer-encoding",
            "keep-alive", "server", "date"}

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self):
        body = self._body()
        down = time.monotonic() < self.server.down_until
        if down or self.server.fail_next > 0:
            self.server.fail_next -= 0 if down else 1
            self.server.failed.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.server.expected is not None and \
                self.headers.get("Authorization") != self.server.expected:
            self.server.refused.append(self.path)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.accepted += 1
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP}
        req = urllib.request.Request(self.server.target + self.path, data=body, headers=headers,
                                     method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                status, got, data = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, got, data = e.code, e.headers, e.read()
        self.send_response(status)
        for k, v in got.items():
            if k.lower() not in self._HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass
