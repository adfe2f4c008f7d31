"""Ctrl-C (and SIGTERM) during a sweep, deferred to safe points.

A ``KeyboardInterrupt`` raised wherever the signal lands can cut an MLflow or Optuna write
in half; with SQLite that leaves the connection holding its write lock, and the cleanup
that should close the runs as KILLED then fails with "database is locked". So while a
worker runs, the signal only sets a flag; the flag is turned into ``KeyboardInterrupt`` at
the next batch boundary (``SafePointInterrupt``, a Lightning callback) or before the next
trial (``check``), where no write is in flight.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from lightning.pytorch.callbacks import Callback

_requested = threading.Event()


def check() -> None:
    if _requested.is_set():
        raise KeyboardInterrupt


def _defer(signum, frame) -> None:
    _requested.set()


@contextlib.contextmanager
def deferred():
    """Installs the flag-setting handlers (main thread only) for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    for s in previous:
        signal.signal(s, _defer)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class SafePointInterrupt(Callback):
    """Raises the deferred interrupt between batches, where Lightning handles it cleanly."""

    def _check(self, *args, **kwargs) -> None:
        check()

    on_train_batch_end = _check
    on_validation_batch_end = _check
    on_test_batch_end = _check
    on_train_epoch_start = _check
