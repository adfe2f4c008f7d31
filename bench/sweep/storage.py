"""Where a study lives, how processes share it, and how its password stays out of sight.

Every process of a sweep (local workers, SLURM jobs on other nodes) opens the same RDB
storage; Optuna's storage is the only channel between them. Two things Optuna does not
provide are added here:

* a study-wide lock (PostgreSQL advisory lock, ``filelock``'s lock beside an SQLite file), held
  while counting trials and asking for the next one, so that workers racing for the last
  slot cannot overshoot the requested number of trials, and while creating the MLflow
  parent run, so that two workers starting together cannot create two parents;
* password hygiene: the URL that travels in configs, MLflow params and logs is the masked
  one (``postgresql://user:***@host/db``); the password itself is carried by the
  environment variable ``BENCH_STORAGE_PASSWORD`` (or libpq's ``PGPASSWORD``/``.pgpass``),
  which child processes and SLURM jobs inherit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage

from bench.tracking import absolute_sqlite, launch_dir, mask_secrets, sqlite_file

PASSWORD_ENV = "BENCH_STORAGE_PASSWORD"
DEFAULT_FILE = "optuna.db"
_MASK = "***"
_USERINFO = re.compile(r"^(?P<head>[^:/]+(?:\+[^:/]+)?://[^/:@\s]+:)(?P<pw>[^@\s]*)(?P<tail>@.*)$")
_local_locks: dict[str, threading.Lock] = {}


def mask(url: str | None) -> str:
    return mask_secrets(url or "")


def resolve(url: str | None) -> str:
    """``None`` -> an SQLite file ``optuna.db`` in the launch directory; relative -> absolute
    (:func:`bench.tracking.absolute_sqlite`, the rule every SQLite store follows)."""
    if not url:
        return f"sqlite:///{(launch_dir() / DEFAULT_FILE).resolve()}"
    return absolute_sqlite(_postgres_driver(url))


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; fall back to psycopg2 if that
    is the driver installed (the ``postgres`` extra), so plain URLs keep working."""
    m = re.match(r"^postgres(?:ql)?://", url)
    if not m:
        return url
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "postgresql+psycopg2://" + url[m.end():]
    return url


def hide_password(url: str) -> str:
    """Moves a password found in ``url`` into the environment and returns the masked URL."""
    m = _USERINFO.match(url)
    if not m or m.group("pw") in ("", _MASK):
        return url
    os.environ[PASSWORD_ENV] = m.group("pw")
    return f"{m.group('head')}{_MASK}{m.group('tail')}"


def reveal(url: str) -> str:
    """The connectable URL: the masked password is replaced from ``BENCH_STORAGE_PASSWORD``."""
    m = _USERINFO.match(url)
    if not m or m.group("pw") != _MASK:
        return url
    pw = os.environ.get(PASSWORD_ENV)
    if pw is None:
        # libpq still finds PGPASSWORD or ~/.pgpass when the URL carries no password.
        return f"{m.group('head')[:-1]}{m.group('tail')}"
    return f"{m.group('head')}{pw}{m.group('tail')}"


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> RDBStorage:
    """An RDB storage with heartbeats; ``url`` may be masked (see :func:`reveal`)."""
    real = reveal(url)
    engine_kwargs: dict = {}
    path = sqlite_file(real)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several local workers write the same file; wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 120}
    elif real.startswith(("postgresql", "mysql")):
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            real,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_callback,
        )


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"bench.sweep:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def study_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Mutual exclusion between every process working on ``study_name``.

    The lock lives where the study lives (the database server, or the file system next to
    an SQLite file), so it also holds across machines, and it is released by the operating
    system or the server when its holder dies.
    """
    local = _local_locks.setdefault(study_name, threading.Lock())
    with local:
        url = str(storage.engine.url)
        path = sqlite_file(reveal(storage.url)) if url.startswith("sqlite") else None
        if path is not None:
            # One lock object per use: filelock counts re-entries per object, and the
            # threading lock above already keeps this process's threads apart.
            with FileLock(path.with_name(path.name + ".lock")):
                yield
        elif storage.engine.dialect.name == "postgresql":
            import sqlalchemy

            key = _lock_key(study_name)
            with storage.engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        else:  # pragma: no cover - other databases (not documented): this process only
            yield
