"""The errors a user can fix from the message alone, gathered in one place.

A known error's message is the whole story: it names the key or file, the value found and
what was expected or how to fix it. The command lines print such an error as one message
and exit non-zero; a traceback would only bury the sentence that matters. Anything else
is a bug or an unforeseen failure, and keeps its traceback, because only the traceback
locates it. ``--verbose`` or ``HYDRA_FULL_ERROR=1`` shows the traceback of known errors too.

This module imports nothing heavy, so a bad configuration is refused before torch,
Lightning or MLflow are loaded.
"""

from __future__ import annotations

import errno
import os
import sys

VERBOSE_FLAG = "--verbose"
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
EXIT_CODE = 1


class BenchError(Exception):
    """A failure the user can fix from its message; printed without a traceback."""


class ConfigError(BenchError, ValueError):
    """A bad configuration value or bad input file; the message names the key or file,
    the offending value and what was expected."""


class DataError(BenchError, ValueError):
    """Bad or missing data; the message names the file, the field and what was expected."""


class StorageError(BenchError, RuntimeError):
    """The MLflow store cannot be opened or written; the message names the store (with any
    password masked) and how to reach a working one."""


class OutOfSpaceError(StorageError):
    """A disk filled up while something was being written to it. The message names the
    file and the file system that is full: a full disk is freed by where it is, not by which
    step of a run happened to hit it."""


class StudyError(BenchError, ValueError):
    """A study definition that cannot run; the message names the key and what was expected."""


class SweepError(BenchError, RuntimeError):
    """The sweep stopped short of its target because trials kept failing."""


# Known errors that still live beside the code that raises them; they join this module's
# family by name so that importing this module stays cheap.
_KNOWN_ELSEWHERE = {
    "bench.task": ("NonFiniteLoss",),
}


def known_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [BenchError]
    hydra_errors = sys.modules.get("hydra.errors")
    if hydra_errors is not None:
        # Hydra's own one-message errors (an unknown config group option, a key that is not
        # in the config); Hydra prints these without a traceback too
        types.append(hydra_errors.CompactHydraException)
    for module, names in _KNOWN_ELSEWHERE.items():
        mod = sys.modules.get(module)  # not loaded: nothing there can have raised
        types += [getattr(mod, n) for n in names if mod is not None and hasattr(mod, n)]
    return tuple(types)


def is_known(exc: BaseException) -> bool:
    """A known error, or any failure a full disk caused (told as :class:`OutOfSpaceError`)."""
    return isinstance(exc, known_types()) or out_of_space_cause(exc) is not None


# What a network failure's long chain of wrapped exceptions comes down to, by the words
# urllib3 and the OS use, so that a message says "cannot resolve the host name" rather
# than end in ``NameResolutionError(<urllib3.connection.HTTPSConnection object at ...>)``.
_NETWORK_REASONS = (
    (("NameResolutionError", "Name or service not known", "Temporary failure in name resolution",
      "nodename nor servname", "getaddrinfo failed"), "cannot resolve the host name (offline?)"),
    (("Connection refused", "ConnectionRefusedError"), "connection refused (is it running?)"),
    (("timed out", "Timeout", "TimeoutError"), "timed out"),
    (("Network is unreachable", "No route to host"), "network unreachable (offline?)"),
    (("SSLError", "CERTIFICATE_VERIFY_FAILED"), "TLS/certificate error"),
)


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """One line for why ``exc`` happened: a network failure in plain words, else the first
    line of its message."""
    chain, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    text = " ".join(chain)
    for needles, reason in _NETWORK_REASONS:
        if any(n in text for n in needles):
            return reason
    first = (str(getattr(exc, "message", None) or exc).strip().splitlines() or [""])[0]
    return (first or type(exc).__name__)[:limit]


# -- a full disk ---------------------------------------------------------------------------
# A full disk surfaces as an OS error (ENOSPC, or EDQUOT for a quota) from a plain write, or
# as SQLite's SQLITE_FULL, which SQLAlchemy and MLflow wrap once each; the one message names
# the file and the file system instead of a chain of tracebacks through both libraries.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = "database or disk is full"


def exception_chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def is_sqlite_full(exc: BaseException) -> bool:
    return not isinstance(exc, OSError) and SQLITE_FULL in str(exc)


def is_full_disk(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno in _FULL_ERRNOS) or is_sqlite_full(e)


def out_of_space_cause(exc: BaseException) -> BaseException | None:
    """The first failure in ``exc``'s chain that was a full disk, or None when none was.

    The first, because what failed next (closing the run, recording the error) only failed
    for the same reason, and the first names the write that actually hit the full disk.
    """
    full = [e for e in exception_chain(exc) if is_full_disk(e)]
    return full[-1] if full else None


def written_file(exc: BaseException) -> str | None:
    """The file that the write which hit a full disk was writing (``exc`` or its chain).

    An OS error names it when opening failed; a write into a file already open names none,
    and then the innermost frame that holds a file opened for writing tells which it was.
    A file closed on a full disk fails twice, first inside ``close`` (no frame of its own)
    then in the ``with`` that closed it, so the same write's later errors are asked too; a
    name given by a re-raise (a temporary file's final name) wins over a frame's file.
    """
    full = [e for e in reversed(exception_chain(exc))
            if isinstance(e, OSError) and e.errno in _FULL_ERRNOS]
    for e in full:
        if e.filename2 or e.filename:
            return os.fsdecode(e.filename2 or e.filename)
    for e in full:
        frames = []
        tb = e.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):
            for value in frame.f_locals.values():
                name, mode = getattr(value, "name", None), getattr(value, "mode", None)
                if (isinstance(name, str) and os.path.isabs(name) and isinstance(mode, str)
                        and any(c in mode for c in "wax+")):
                    return name
    return None


def mount_point(path: str | os.PathLike) -> str:
    """The mount point of the file system holding ``path`` (which may no longer exist)."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return p


def out_of_space_text(what: str, path: str | os.PathLike | None, fix: str = "") -> str:
    """``out of space writing <what> <path>: the file system at <mount> is full; <fix>``."""
    if path is None:
        return f"out of space writing {what}: a file system is full (df -h shows which); free space{fix}"
    return (f"out of space writing {what} {path}: the file system at {mount_point(path)} is "
            f"full; free space there{fix}")


def out_of_space(exc: BaseException, databases: dict[str, os.PathLike | None] | None = None,
                 ) -> OutOfSpaceError | None:
    """``exc`` as one :class:`OutOfSpaceError` when a full disk caused it (for failures outside
    a run, which names what it was writing itself); None when no full disk did.

    SQLite says only "database or disk is full"; ``databases`` (what -> file, e.g. the MLflow
    store and the Optuna storage) lets the message name the one whose file system is full."""
    if isinstance(exc, OutOfSpaceError):
        return exc
    cause = out_of_space_cause(exc)
    if cause is None:
        return None
    if is_sqlite_full(cause):
        what, path = _fullest(databases or {})
        return OutOfSpaceError(out_of_space_text(what, path))
    return OutOfSpaceError(out_of_space_text("a file", written_file(exc)))


def _fullest(databases: dict[str, os.PathLike | None]) -> tuple[str, os.PathLike | None]:
    """Of the database files, the one on the file system with least room left, when that
    file system has under 1 MiB (then it is the full one)."""
    free = {}
    for what, path in databases.items():
        if path is None:
            continue
        try:
            st = os.statvfs(mount_point(path))
        except OSError:
            continue
        free[what] = (st.f_bavail * st.f_frsize, path)
    if free:
        what, (room, path) = min(free.items(), key=lambda kv: kv[1][0])
        if room < 1 << 20:
            return what, path
    return "an SQLite database", None


def wants_traceback() -> bool:
    """True when the user asked for tracebacks (``--verbose`` or ``HYDRA_FULL_ERROR=1``)."""
    return VERBOSE_FLAG in sys.argv or os.environ.get(FULL_ERROR_ENV, "") not in ("", "0")


def _misspelled_key(cause: BaseException | None) -> str | None:
    """``hydra.sweeper.n_trails: unknown key; did you mean 'hydra.sweeper.n_trials'?`` for an
    override of a key that a structured config (a dataclass: the sweeper's settings, Hydra's
    own) or a config group in struct mode does not have, where the closest key is near
    enough to be the one meant."""
    import dataclasses
    import difflib

    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if not isinstance(cause, ConfigKeyError | ConfigAttributeError):
        return None
    kind, key, full = (getattr(cause, a, None) for a in ("object_type", "key", "full_key"))
    node = getattr(cause, "parent_node", None)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        fields = [f.name for f in dataclasses.fields(kind)]
    elif isinstance(node, DictConfig):
        fields = [str(k) for k in node]
    else:
        return None
    close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6) if key and full else []
    if not close:
        return None
    parent = str(full)[: -len(str(key))]
    return f"{full}: unknown key; did you mean '{parent}{close[0]}'?"


def message(exc: BaseException) -> str:
    """The one message printed for a known error."""
    if not isinstance(exc, known_types()):
        exc = out_of_space(exc) or exc
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    typo = _misspelled_key(cause)
    if typo is not None:
        text = typo  # Hydra's advice ("use +key to append") is wrong for a typo
    elif cause is not None and type(cause).__module__.startswith("omegaconf"):
        text += "\n" + str(cause).strip()  # Hydra's message names the override, this the key
    return (f"error: {text}\n(add {VERBOSE_FLAG} or set {FULL_ERROR_ENV}=1 to see the "
            "traceback)")


def report(exc: BaseException, stream=None) -> None:
    stream = stream or sys.stderr
    stream.write(message(exc) + "\n")
    stream.flush()
