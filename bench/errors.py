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
    return isinstance(exc, known_types())


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


def wants_traceback() -> bool:
    """True when the user asked for tracebacks (``--verbose`` or ``HYDRA_FULL_ERROR=1``)."""
    return VERBOSE_FLAG in sys.argv or os.environ.get(FULL_ERROR_ENV, "") not in ("", "0")


def message(exc: BaseException) -> str:
    """The one message printed for a known error."""
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf"):
        text += "\n" + str(cause).strip()  # Hydra's message names the override, this the key
    return (f"error: {text}\n(add {VERBOSE_FLAG} or set {FULL_ERROR_ENV}=1 to see the "
            "traceback)")


def report(exc: BaseException, stream=None) -> None:
    stream = stream or sys.stderr
    stream.write(message(exc) + "\n")
    stream.flush()
