"""``python -m bench.sweep.worker_entry PAYLOAD.json INDEX SWEEP_PID``: a local worker's start.

A worker must die with the sweep that started it. Linux's parent-death signal does that, but
only if it is armed while the sweep is still the parent: a worker that first imports torch,
Lightning and MLflow (half a minute on a loaded machine) may already have been re-parented
when it asks, and would then compare its new parent with itself and run on, orphaned, through
whole studies. So this module imports nothing heavy: it arms the signal first, checks that the
parent is still the sweep whose pid it was given, and only then loads the worker.
"""

from __future__ import annotations

import os
import signal
import sys

USAGE = "usage: python -m bench.sweep.worker_entry PAYLOAD.json WORKER_INDEX SWEEP_PID"


def stop_with_parent(sweep_pid: int) -> bool:
    """Arms SIGTERM on the parent's death; False when the sweep is already gone."""
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PDEATHSIG
    return os.getppid() == sweep_pid


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or not argv[2].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    if not stop_with_parent(int(argv[2])):
        print(f"worker {argv[1]}: its sweep (pid {argv[2]}) is gone; not starting",
              file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    from bench.sweep.worker import main as worker_main

    return worker_main(argv[:2])


if __name__ == "__main__":
    sys.exit(main())
