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
  which child processes and SLURM jobs inherit (the rules: :mod:`bench.passwords`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from collections.abc import Callable, Iterator

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage

from bench import passwords
from bench.tracking import (
    absolute_sqlite,
    launch_dir,
    mask_secrets,
    postgres_driver,
    schema_lock,
    sqlite_file,
)

PASSWORD_ENV = passwords.STORAGE_ENV
DEFAULT_FILE = "optuna.db"
_local_locks: dict[str, threading.Lock] = {}


def mask(url: str | None) -> str:
    return mask_secrets(url or "")


def resolve(url: str | None) -> str:
    """``None`` -> an SQLite file ``optuna.db`` in the launch directory; relative -> absolute
    (:func:`bench.tracking.absolute_sqlite`, the rule every SQLite store follows)."""
    if not url:
        return f"sqlite:///{(launch_dir() / DEFAULT_FILE).resolve()}"
    return absolute_sqlite(postgres_driver(url))


def hide_password(url: str) -> str:
    """Moves a password found in ``url`` into the environment and returns the masked URL."""
    return passwords.hide(url, PASSWORD_ENV)


def reveal(url: str) -> str:
    """The connectable URL: a masked password, or none where the URL names a user, comes
    from ``BENCH_STORAGE_PASSWORD``; without it libpq's ``PGPASSWORD`` or ``~/.pgpass``."""
    return passwords.reveal(url, PASSWORD_ENV)


def shell_form(url: str) -> tuple[str, str]:
    """The storage as an argument to paste into a shell (``optuna-dashboard ...``), with the
    password as ``$BENCH_STORAGE_PASSWORD``, and a note saying so (or "")."""
    return passwords.shell_form(url, PASSWORD_ENV)


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> RDBStorage:
    """An RDB storage with heartbeats; ``url`` may be masked (see :func:`reveal`).

    Optuna creates a fresh SQLite file's tables while it opens it; two sweeps started
    together on the same new file would both create them, so that happens under the
    file's schema lock (:func:`bench.tracking.schema_lock`).
    """
    real = reveal(url)
    engine_kwargs: dict = {}
    path = sqlite_file(real)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several local workers write the same file; wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 120}
    elif real.startswith(("postgresql", "mysql")):
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings(), schema_lock(path):
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
