"""Where a study lives and how processes share it.

Every process of a sweep (local workers, SLURM jobs on other nodes) opens the same RDB
storage; Optuna's storage is the only channel between them. What Optuna does not provide is
added here: a study-wide lock (PostgreSQL advisory lock, ``filelock``'s lock beside an SQLite
file), held while counting trials and asking for the next one, so that workers racing for the
last slot cannot overshoot the requested number of trials, and while creating the MLflow
parent run, so that two workers starting together cannot create two parents.

The storage's address and its password are a :class:`~bench.stores.StoreAddress`: masked
wherever it travels, revealed only here, where the connection is opened.
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

from bench.errors import StorageError, is_sqlite_full, short_reason
from bench.stores import StoreAddress, schema_lock, sqlite_file

_local_locks: dict[str, threading.Lock] = {}


def open_storage(
    address: StoreAddress,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> RDBStorage:
    """An RDB storage with heartbeats, connected by ``address`` (:meth:`StoreAddress.connect`).

    Optuna creates a fresh SQLite file's tables while it opens it; two sweeps started
    together on the same new file would both create them, so that happens under the
    file's schema lock (:func:`bench.stores.schema_lock`).
    """
    real = address.connect()
    engine_kwargs: dict = {}
    path = sqlite_file(real)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several local workers write the same file; wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 120}
    elif real.startswith(("postgresql", "mysql")):
        engine_kwargs["pool_pre_ping"] = True
    import sqlalchemy.exc

    with warnings.catch_warnings(), schema_lock(path):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                real,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_callback,
            )
        except sqlalchemy.exc.OperationalError as exc:
            if path is not None or is_sqlite_full(exc):
                raise  # a local file's trouble is told by the out-of-space and lock handling
            # a server that is down, a wrong database or password: one line, not SQLAlchemy's
            # chain of a hundred and fifty
            raise StorageError(f"cannot open the Optuna storage {address}: {short_reason(exc)}; "
                               "check that the server runs and the URL (host, port, database, "
                               "user) is right") from exc


INCARNATIONS_ATTR = "bench:worker_incarnations"


def claim_incarnation(storage: RDBStorage, study_name: str) -> int:
    """The number of worker processes that opened ``study_name`` before this one, counted in
    the storage under the study lock, so every process (on any machine) gets its own."""
    study_id = storage.get_study_id_from_name(study_name)
    with study_lock(storage, study_name):
        n = int(storage.get_study_system_attrs(study_id).get(INCARNATIONS_ATTR, 0))
        storage.set_study_system_attr(study_id, INCARNATIONS_ATTR, n + 1)
    return n


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
        path = sqlite_file(url) if url.startswith("sqlite") else None
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
