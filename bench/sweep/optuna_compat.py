"""The Optuna internals a sweep relies on, in one place, each with why (Optuna 5.0).

Everything else in the project uses Optuna's public API. These have no public equivalent for
ask-and-tell workers; an Optuna upgrade that moves them breaks here only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna
from optuna.storages import RDBStorage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial.

    A trial shows its ``number`` only, but the storage API that a worker needs outside
    ``study.optimize`` (recording a heartbeat, reading the trial back, failing a queued
    retry) is keyed by the id.
    """
    return trial._trial_id


def stale_trial_ids(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """RUNNING trials whose heartbeat is older than the storage's grace period.

    ``study.optimize`` fails such trials itself when it starts; a worker that asks for its
    trials one at a time must find them, to queue them again, and the storage's finder is
    private.
    """
    return list(storage._get_stale_trial_ids(study._study_id))


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial, storage: RDBStorage) -> Iterator[None]:
    """Stamps ``trial`` every ``heartbeat_interval`` seconds while the block runs.

    ``study.optimize`` runs this thread itself; an ask-and-tell worker has no public way to
    start it, and without it a killed worker's trial would never be found stale and retried.
    """
    from optuna.storages._heartbeat import HeartbeatThread

    with HeartbeatThread(trial_id(trial), storage):
        yield
