"""Trials whose worker died: queued again *before* they are marked failed, exactly once.

Optuna's own path (``fail_stale_trials`` then ``RetryHeartbeatStaleTrialCallback``) marks a
stale trial FAIL first and queues its retry afterwards; a process killed between the two
writes loses the trial for good, and the sweep later reports it as having exhausted a retry
budget it never used. Here the order is reversed and made idempotent, under the study lock:

1. if no trial already retries this one (a retry's ``retry_history`` ends with its number)
   and the retry budget allows, a WAITING copy with the same parameters is queued;
2. only then is the lost trial marked FAIL (``lost`` user attribute saying why).

A process killed after step 1 leaves the lost trial RUNNING with its retry queued; the next
recovery finds the retry and only does step 2. Nothing is lost, nothing doubled.

Two sources name lost trials: stale heartbeats (any worker, any machine, after the grace
period) and a sweep's parent seeing one of its own worker processes die (at once: the dead
process's pid is on its trials).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import warnings
from collections.abc import Iterable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from bench.sweep import optuna_compat
from bench.sweep.optuna_compat import trial_id
from bench.sweep.settings import SweepSettings
from bench.sweep.storage import study_lock

log = logging.getLogger("bench.sweep")

# Test hook: the named step kills this process with SIGKILL right after it, so tests can
# kill a sweep exactly between queueing a retry and failing the lost trial.
FAILPOINT_ENV = "BENCH_FAILPOINT"
LOST_ATTR = "lost"
SUPERSEDED_ATTR = "superseded"


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def retry_history(trial: FrozenTrial) -> list[int]:
    with warnings.catch_warnings():   # experimental in Optuna 5, and the public way to ask
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return list(RetryHeartbeatStaleTrialCallback.retry_history(trial))


def retries_of(trials: Iterable[FrozenTrial]) -> dict[int, FrozenTrial]:
    """trial number -> the trial queued to retry it."""
    out = {}
    for t in trials:
        h = retry_history(t)
        if h:
            out[h[-1]] = t
    return out


def stale_trial_ids(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """RUNNING trials whose heartbeat is older than the grace period."""
    if not storage.heartbeat_interval:
        return []
    return optuna_compat.stale_trial_ids(study, storage)


def trial_ids_of_dead_process(study: optuna.Study, pid: int) -> list[int]:
    """RUNNING trials started by process ``pid`` on this host (which is known to be dead)."""
    host = socket.gethostname()
    return [trial_id(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("pid") == pid and t.user_attrs.get("host") == host]


def requeue(study: optuna.Study, storage: RDBStorage, settings: SweepSettings,
            trial_ids: Iterable[int], why: str, *, locked: bool = False) -> list[int]:
    """Queues a retry of each still-RUNNING trial in ``trial_ids`` (once), then fails it.

    Returns the numbers of the trials failed here. ``locked``: the caller holds the study
    lock already.
    """
    ids = list(trial_ids)
    if not ids:
        return []
    if not locked:
        with study_lock(storage, settings.study_name):
            return requeue(study, storage, settings, ids, why, locked=True)
    failed = []
    retries = retries_of(study.get_trials(deepcopy=False))
    for tid in ids:
        trial = storage.get_trial(tid)
        if trial.state != TrialState.RUNNING:
            continue   # finished meanwhile, or recovered by someone else
        history = retry_history(trial)
        budget_left = settings.max_retry is None or len(history) < settings.max_retry
        queued = trial.number in retries
        if budget_left and not queued:
            RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)(study, trial)
        _failpoint("requeued")
        storage.set_trial_user_attr(tid, LOST_ATTR, why)
        try:
            storage.set_trial_state_values(tid, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            _cancel_retry(study, storage, trial.number)
            continue
        failed.append(trial.number)
        log.warning("trial %d lost (%s): marked FAIL, %s", trial.number, why,
                    "queued again" if budget_left or queued else
                    f"not retried: {len(history)} retries already (max_retry {settings.max_retry})")
    return failed


def _cancel_retry(study: optuna.Study, storage: RDBStorage, number: int) -> None:
    """The 'lost' trial finished after all (its worker was only slow): its queued retry goes."""
    retry = retries_of(study.get_trials(deepcopy=False)).get(number)
    if retry is not None and retry.state == TrialState.WAITING:
        storage.set_trial_user_attr(trial_id(retry), SUPERSEDED_ATTR, number)
        storage.set_trial_state_values(trial_id(retry), TrialState.FAIL)


def lost_for_good(trials: list[FrozenTrial]) -> list[tuple[int, int]]:
    """(trial number, retries it had) for lost trials with no retry queued: those that used
    up the retry budget. Trials failed by their own error, or cancelled, are not lost."""
    retries = retries_of(trials)
    return [(t.number, len(retry_history(t))) for t in trials
            if t.state == TrialState.FAIL and "error" not in t.user_attrs
            and SUPERSEDED_ATTR not in t.user_attrs and t.number not in retries]
