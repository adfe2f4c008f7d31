"""Scratch folders in the temp folder that go away with the run or sweep that made them.

A run outside a Hydra job keeps its checkpoints in one, a sweep with worker processes its
payload; each is removed when its owner ends, however it ends, except when the process is
killed outright (SIGKILL, the OOM killer), which no cleanup survives. So each folder names
its owner, and making a new folder of the same kind removes those whose owner is provably
gone: same machine, same boot, same process namespace, and its pid no longer alive. A folder
whose owner cannot be told apart (another machine or container sharing the temp folder, a
folder without an owner file) is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

OWNER_FILE = ".owner.json"


def _identity() -> dict[str, str]:
    """Where a pid means the same process: the machine, its boot and the pid namespace."""
    def read(fn) -> str:
        try:
            return fn()
        except OSError:
            return ""

    return {
        "host": socket.gethostname(),
        "boot": read(lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip()),
        "pidns": read(lambda: os.readlink("/proc/self/ns/pid")),
    }


def make(kind: str) -> Path:
    """A new folder ``<kind>-*`` in the temp folder, owned by this process (the caller
    removes it); stale folders of the same kind go first."""
    remove_stale(kind)
    path = Path(tempfile.mkdtemp(prefix=f"{kind}-"))
    try:
        (path / OWNER_FILE).write_text(json.dumps({**_identity(), "pid": os.getpid()}))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


@contextlib.contextmanager
def folder(kind: str) -> Iterator[Path]:
    """:func:`make`'s folder for the duration, removed however the block ends."""
    path = make(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(kind: str) -> list[Path]:
    """Removes the ``<kind>-*`` folders of dead processes on this machine; returns them."""
    me, removed = _identity(), []
    for owner in Path(tempfile.gettempdir()).glob(f"{kind}-*/{OWNER_FILE}"):
        try:
            info = json.loads(owner.read_text())
            if any(info.get(k) != v or not v for k, v in me.items()) or _alive(int(info["pid"])):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        shutil.rmtree(owner.parent, ignore_errors=True)
        removed.append(owner.parent)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
