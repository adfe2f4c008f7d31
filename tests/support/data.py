"""Helpers the data tests import: the fixtures folder, real configs, a local HTTP server."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def dataset_cfg(name: str, **overrides) -> DictConfig:
    """A real ``conf/dataset/<name>.yaml`` with overrides merged (lists are replaced)."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.merge(cfg, OmegaConf.create(overrides))


class Server:
    """Serves ``files`` (URL path -> bytes); ``hits`` counts requests per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()  # paths sent short of their Content-Length
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.hits[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.truncate else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
