"""Ctrl-C and SIGTERM: deferred to safe points, remembered, and turned into the right exit code.

A ``KeyboardInterrupt`` raised wherever the signal lands can cut an MLflow or Optuna write
in half; with SQLite that leaves the connection holding its write lock, and the cleanup
that should close the runs as KILLED then fails with "database is locked". So while a run or
a worker runs, the signal only sets a flag; the flag is turned into ``KeyboardInterrupt`` at
the next batch boundary (``SafePointInterrupt``, a Lightning callback) or before the next
trial (``check``), where no write is in flight. A second Ctrl-C does not wait.

The signal is remembered, because schedulers and shells read the exit status: SLURM,
``timeout`` and CI systems take 0 for success, so a run stopped by SIGTERM must end with
143 and one stopped by Ctrl-C with 130 (128 + the signal number), never 0 and never the 1
that Lightning's own ``sys.exit(1)`` on ``KeyboardInterrupt`` would give.
"""

from __future__ import annotations

import contextlib
import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)
_requested = threading.Event()
_received: list[int] = []   # the first signal that asked this process to stop
_depth = 0


def check() -> None:
    if _requested.is_set():
        raise KeyboardInterrupt


def received() -> int | None:
    """The signal number that asked this process to stop, if one did."""
    return _received[0] if _received else None


def signal_name(signum: int | None = None) -> str:
    signum = received() if signum is None else signum
    return signal.Signals(signum).name if signum else "interrupt"


def exit_code(default: int = 130) -> int:
    """128 + the signal received (130 for SIGINT, 143 for SIGTERM); ``default`` when an
    interrupt came without a signal (a ``KeyboardInterrupt`` raised in code)."""
    signum = received()
    return 128 + signum if signum else default


def record(signum: int) -> None:
    if not _received:
        _received.append(int(signum))


def reset() -> None:
    """Forgets a past stop request (tests run several stops in one process)."""
    _requested.clear()
    _received.clear()


def _defer(signum, frame) -> None:
    if _requested.is_set() and signum == signal.SIGINT:
        raise KeyboardInterrupt   # a second Ctrl-C: stop now, at whatever cost
    record(signum)
    _requested.set()


def _raise(signum, frame) -> None:
    record(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def _handlers(handler):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """Flag-setting handlers for the duration (main thread only). Nested uses share the
    outermost one's flag, so a stop requested before an inner run starts is not lost."""
    global _depth
    if _depth == 0:   # a new top-level run or sweep: an earlier, handled stop is forgotten
        reset()
    _depth += 1
    try:
        with _handlers(_defer):
            yield
    finally:
        _depth -= 1


@contextlib.contextmanager
def raising():
    """Handlers that raise ``KeyboardInterrupt`` at once, for a process that only waits (a
    sweep's parent polling its workers): nothing there can be cut in half."""
    if _requested.is_set():
        raise KeyboardInterrupt
    with _handlers(_raise):
        yield


def __getattr__(name: str):
    # ``SafePointInterrupt`` is made on first use: importing Lightning costs seconds, and a
    # sweep's parent or a refused command should fail or start without it.
    if name == "SafePointInterrupt":
        from lightning.pytorch.callbacks import Callback

        class SafePointInterrupt(Callback):
            """Raises the deferred interrupt between batches, where Lightning handles it
            cleanly."""

            def _check(self, *args, **kwargs) -> None:
                check()

            on_train_batch_end = _check
            on_validation_batch_end = _check
            on_test_batch_end = _check
            on_train_epoch_start = _check

        globals()[name] = SafePointInterrupt
        return SafePointInterrupt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
