"""The Optuna internals a sweep relies on, in one place, each with why (Optuna 5.0).

Everything else in :mod:`bench.sweep` uses Optuna's public API. These two have no public
equivalent for ask-and-tell workers; an Optuna upgrade that moves them breaks here only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna
from optuna.storages import RDBStorage


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a trial.

    ``Trial`` shows its ``number`` only, but the storage API that a worker needs outside
    ``study.optimize`` (recording a heartbeat, reading the trial back) is keyed by the id.
    """
    return trial._trial_id


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial, storage: RDBStorage) -> Iterator[None]:
    """Stamps ``trial`` every ``heartbeat_interval`` seconds while the block runs.

    ``study.optimize`` runs this thread itself; an ask-and-tell worker has no public way to
    start it, and without it a killed worker's trial would never be found stale and retried.
    """
    from optuna.storages._heartbeat import HeartbeatThread

    with HeartbeatThread(trial_id(trial), storage):
        yield
