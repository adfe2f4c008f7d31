"""A sweep worker: ask for a trial, train it, tell the result, repeat until the study is done.

Workers never wait for each other: each takes the next trial as soon as its last one ends,
so one slow configuration does not idle the others (Hydra's batch launching would). The
only coordination is through the study's storage:

* under the study lock a worker counts COMPLETE + PRUNED + RUNNING trials and asks for a
  new one only if that leaves room below ``n_trials``, so the count is exact however many
  workers race for the last slot;
* while training, a heartbeat thread stamps the trial; before asking, every worker fails
  trials whose heartbeat went stale (their worker was killed) and Optuna's
  ``RetryHeartbeatStaleTrialCallback`` enqueues them again with the same parameters, up to
  ``max_retry`` times; a worker that finds the study full but with trials still RUNNING
  waits for them, so a lost trial is always picked up by someone who is still alive;
* an exception or a non-finite loss fails that trial only (its error is kept on the trial
  and in its MLflow run); Ctrl-C or SIGTERM ends the running trial (its MLflow run is
  closed KILLED), marks it failed and queues it again, so re-running the sweep resumes it.

The trial reaches its run as arguments: the worker builds the run's pruning callback,
MLflow tags and parent run and calls :func:`bench.train.run` itself; nothing about the
trial is kept in process-wide state or in the run's config.

Every worker runs :func:`work`: in the sweep's own process for one worker, else in a
process started with ``python -m bench.sweep.worker_entry PAYLOAD.json INDEX SWEEP_PID``
(:mod:`bench.sweep.worker_entry`, which ties the worker's life to the sweep's before any heavy
import) or as a Hydra launcher job, both of which read the payload :func:`write_payload` wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from bench import errors, interrupt, tracking
from bench.stores import StoreAddress, mask
from bench.sweep import devices, parent, recovery
from bench.sweep import space as space_mod
from bench.sweep.optuna_compat import heartbeat, trial_id
from bench.sweep.settings import SweepSettings
from bench.sweep.storage import claim_incarnation, open_storage, study_lock
from bench.sweep.strategy import make_pruner, make_sampler, worker_seed
from bench.vocab import count_finished

log = logging.getLogger("bench.sweep")
TAGS = tracking.TAGS
STOPPED_ON_FAILURES = 3   # a worker's exit code after max_failures
STOPPED_ON_OUTAGE = 4     # ... after the tracking store stayed down for outage_wait seconds
STOPPED_ON_FULL_DISK = 5  # ... after a full disk: retrying cannot help, a replacement neither


@dataclass
class WorkerReport:
    worker: int
    states: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    stopped_on_failures: bool = False
    stopped_on_outage: bool = False
    full_disk: str = ""   # the one message, when a full disk stopped this worker

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return interrupt.exit_code()
        if self.full_disk:
            return STOPPED_ON_FULL_DISK
        if self.stopped_on_outage:
            return STOPPED_ON_OUTAGE
        return STOPPED_ON_FAILURES if self.stopped_on_failures else 0


@cache
def _pruning_callback_class() -> type:
    # Made on first use, with Lightning: a sweep's parent process imports this module for its
    # payload and recovery code and never trains, and importing Lightning costs seconds.
    from optuna_integration import PyTorchLightningPruningCallback

    class PruningCallback(PyTorchLightningPruningCallback):
        """optuna-integration's callback, plus the link from the trial to its MLflow run.

        Reports ``val/<metric>`` after every validation epoch (also with pruner "none": the
        dashboard's curves come from these reports) and raises ``optuna.TrialPruned`` when the
        pruner says so. The MLflow run id is stored on the trial as soon as training starts,
        so the study (and the report built from it) can point at every trial's curves,
        including pruned ones.
        """

        def on_fit_start(self, trainer, pl_module) -> None:
            super().on_fit_start(trainer, pl_module)
            run_id = getattr(trainer.logger, "run_id", None)
            if run_id:
                self._trial.set_user_attr(tracking.RUN_ID_ATTR, run_id)

    return PruningCallback


def pruning_callback(trial: optuna.Trial, monitor: str):
    """The Lightning callback that reports a trial's epochs to Optuna and prunes it."""
    return _pruning_callback_class()(trial, monitor=monitor)


def close_lost_runs(settings: SweepSettings, numbers: list[int], why: str) -> None:
    """Best effort: the MLflow runs of lost trials closed FAILED (a sweep's end closes any
    left RUNNING, see :func:`bench.sweep.parent.reconcile_children`)."""
    if not (numbers and settings.tracking_uri and settings.experiment_id):
        return
    try:
        client = tracking.client_for(StoreAddress.tracking(settings.tracking_uri))
        for n in numbers:
            parent.close_child(client, settings.experiment_id, settings.study_name, n, why)
    except Exception as exc:  # the retry is queued already; the MLflow status can wait
        log.warning("could not close the MLflow runs of lost trials %s: %s", numbers, mask(str(exc)))


# -- payload: how worker processes and launcher jobs receive the sweep ---------------------


def write_payload(settings: SweepSettings, base: DictConfig, folder: Path) -> Path:
    """The settings and base config for worker processes or jobs (no password inside)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sweep_{settings.study_name}.json"
    path.write_text(json.dumps({"settings": dataclasses.asdict(settings),
                                "cfg": OmegaConf.to_container(base)}))
    return path


def run_payload(path: str | Path, index: int) -> WorkerReport:
    """One worker from a payload file: the entry of worker processes and launcher jobs."""
    payload = json.loads(Path(path).read_text())
    settings = SweepSettings.from_json(json.dumps(payload["settings"]))
    return work(settings, OmegaConf.create(payload["cfg"]), int(index))


# -- the worker loop ------------------------------------------------------------------------


def work(settings: SweepSettings, base: DictConfig, worker: int = 0) -> WorkerReport:
    """The worker loop; returns what this worker did (``interrupted`` after Ctrl-C)."""
    report = WorkerReport(worker)
    space = space_mod.load(settings.space, settings.params)
    space.check(base)
    try:
        with _quiet_experimental(), interrupt.deferred():
            _loop(settings, base, worker, space, report)
    except KeyboardInterrupt:
        report.interrupted = True
    except Exception as exc:
        full = errors.out_of_space(exc, _databases(settings, base))
        if full is None:
            raise
        report.full_disk = mask(str(full))
        log.error("study %s: worker stops: %s", settings.study_name, report.full_disk)
    return report


def _tracking_store(settings: SweepSettings, base: DictConfig) -> StoreAddress:
    """The MLflow store the trials write to: the sweep's, as prepared, else the run config's."""
    if settings.tracking_uri:
        return StoreAddress.tracking(settings.tracking_uri)
    return tracking.store_of(base)


def _databases(settings: SweepSettings, base: DictConfig) -> dict:
    """The SQLite files a full disk may have hit, for the message to name the full one."""
    return {"the MLflow store": _tracking_store(settings, base).sqlite_file,
            "the Optuna storage": StoreAddress.optuna(settings.storage).sqlite_file}


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        yield


def open_study(settings: SweepSettings,
               max_epochs: int | None) -> tuple[optuna.Study, RDBStorage]:
    """The shared study, with this worker's sampler stream; and its storage, for heartbeats."""
    storage = open_storage(
        StoreAddress.optuna(settings.storage),
        heartbeat_interval=settings.heartbeat_interval or None,
        grace_period=settings.effective_grace_period,
    )
    incarnation = claim_incarnation(storage, settings.study_name)
    study = optuna.load_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(settings.sampler, worker_seed(settings.seed, incarnation),
                             settings.sampler_kwargs),
        pruner=make_pruner(settings.pruner, max_epochs),
    )
    return study, storage


def _loop(settings: SweepSettings, base: DictConfig, worker: int, space: space_mod.Space,
          report: WorkerReport) -> None:
    study, storage = open_study(settings, int(base.trainer.max_epochs))
    while True:
        interrupt.check()
        trial, why = next_trial(study, storage, settings)
        if why == "done":
            break
        if why == "failures":
            report.stopped_on_failures = True
            log.error("study %s: %s trials failed with errors in this sweep; stopping "
                      "(max_failures). See the trials' 'error' attribute.",
                      settings.study_name, settings.max_failures or settings.n_trials)
            break
        if trial is None:
            time.sleep(settings.poll_interval)
            continue
        try:
            state = run_trial(study, storage, trial, base, settings, space)
        except SystemExit as exc:  # Lightning turns a KeyboardInterrupt into exit(1)
            raise KeyboardInterrupt from exc
        report.count(state)
        if state == "REQUEUED" and not _store_back(settings, base):
            report.stopped_on_outage = True
            break


def _store_back(settings: SweepSettings, base: DictConfig) -> bool:
    """After a tracking error: whether the store answers again within ``outage_wait``, so that
    the next trial does not spend its retries against a server that is down."""
    from bench import outage

    if not settings.outage_wait:
        return True
    store = _tracking_store(settings, base)
    back, _ = outage.wait_for(store, float(settings.outage_wait))
    if not back:
        log.error("study %s: worker stops, the tracking store %s did not answer for %.0f s "
                  "(outage_wait); the trial stays queued for the next run", settings.study_name,
                  store, settings.outage_wait)
    return back


def next_trial(study: optuna.Study, storage: RDBStorage,
               settings: SweepSettings) -> tuple[optuna.Trial | None, str]:
    """Under the study lock: a new trial, or why none (``done``/``wait``/``failures``).

    Trials whose heartbeat went stale are queued again first (:mod:`bench.sweep.recovery`),
    so a lost trial counts as room for a new one only once its retry is in the queue."""
    lost: list[int] = []
    with study_lock(storage, settings.study_name):
        stale = recovery.stale_trial_ids(study, storage)
        if stale:
            lost = recovery.requeue(study, storage, settings, stale,
                                    f"no heartbeat for {settings.effective_grace_period}s",
                                    locked=True)
        trials = study.get_trials(deepcopy=False)
        done = count_finished(t.state for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        failures = sum(t.state == TrialState.FAIL and "error" in t.user_attrs
                       and t.number >= settings.start_number for t in trials)
        limit = settings.max_failures if settings.max_failures is not None else settings.n_trials
        trial, why = None, "run"
        if done >= settings.n_trials:
            why = "done"
        elif failures >= limit:
            why = "failures"
        elif done + running >= settings.n_trials:
            # Room only if a running trial fails; without heartbeats nobody would notice.
            why = "wait" if settings.heartbeat_interval else "done"
        else:
            trial = study.ask()
            if settings.heartbeat_interval:
                storage.record_heartbeat(trial_id(trial))
    close_lost_runs(settings, lost, "worker lost: no heartbeat")
    return trial, why


# -- one trial ------------------------------------------------------------------------------


def run_trial(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial,
              base: DictConfig, settings: SweepSettings, space: space_mod.Space) -> str:
    """Runs one trial to its end and tells the study; returns the final state's name."""
    try:
        if settings.heartbeat_interval:
            with heartbeat(trial, storage):
                return _train_and_tell(study, storage, trial, base, settings, space)
        return _train_and_tell(study, storage, trial, base, settings, space)
    finally:
        release_memory()


def release_memory() -> None:
    """Frees what the finished trial held before the worker asks for the next one.

    The trainer, the LightningModule, the optimiser state and the data module (with its
    on-device copy of the dataset) reference each other, so they outlive ``run`` until a
    garbage collection; and PyTorch's caching allocator keeps freed GPU blocks for this
    process, which other workers sharing the GPU then cannot use.
    """
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def trial_config(base: DictConfig, settings: SweepSettings, trial: optuna.Trial,
                 values: dict[str, Any]) -> DictConfig:
    """The base config with the trial's values, named after the study and trial."""
    cfg = space_mod.apply(base, values)
    if cfg.get("run_name") is None:
        OmegaConf.update(cfg, "run_name", f"{settings.study_name}-trial{trial.number}",
                         force_add=True)
    return cfg


def trial_tags(settings: SweepSettings, trial: optuna.Trial, storage: RDBStorage) -> dict:
    """The MLflow tags that tie a run to its study and trial (and to the trial it retries)."""
    with _quiet_experimental():
        retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(
            storage.get_trial(trial_id(trial)))
    tags = {TAGS["optuna_study"]: settings.study_name, TAGS["optuna_trial"]: str(trial.number),
            TAGS["sweep_role"]: "trial", TAGS["optuna_space"]: settings.space}
    if retry_of is not None:
        tags[TAGS["retry_of"]] = str(retry_of)
    return tags


def _train_and_tell(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial,
                    base: DictConfig, settings: SweepSettings, space: space_mod.Space) -> str:
    from bench import fold_train
    from bench.train import run

    try:
        _set_attrs(trial, host=socket.gethostname(), pid=os.getpid(),
                   device=devices.describe(base.trainer))
        values = space.suggest(trial, base)
        cfg = trial_config(base, settings, trial, values)
        log.info("trial %d: %s", trial.number, values)
        callbacks = [pruning_callback(trial, f"val/{cfg.dataset.metric}"),
                     interrupt.SafePointInterrupt()]
        tags = trial_tags(settings, trial, storage)
        if fold_train.requested(cfg):  # small training sets: the mean over folds
            hooks = fold_train.TrialHooks(
                report=_fold_reporter(trial),
                started=lambda run_id: _set_attrs(trial, **{tracking.RUN_ID_ATTR: run_id}))
            result = fold_train.run_trial(cfg, hooks=hooks, tags=tags, callbacks=callbacks,
                                          parent_run_id=settings.parent_run_id)
        else:
            result = run(cfg, callbacks=callbacks, tags=tags,
                         parent_run_id=settings.parent_run_id, test=False)
    except optuna.TrialPruned as exc:
        reported = storage.get_trial(trial_id(trial)).intermediate_values
        _set_attrs(trial, epochs_trained=len(reported))
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        log.info("trial %d pruned (%s)", trial.number, exc)
        return "PRUNED"
    except (KeyboardInterrupt, SystemExit):
        # queued again before it is marked failed, so a second signal cannot lose it
        recovery.requeue(study, storage, settings, [trial_id(trial)],
                         f"stopped by {interrupt.signal_name()}")
        log.warning("trial %d interrupted: marked FAIL and queued again for the next run",
                    trial.number)
        raise
    except Exception as exc:
        if errors.out_of_space_cause(exc) is not None:
            # the disk's fault, not the configuration's: queued again for the run after the
            # space is freed, and the worker stops (work() says why, once)
            # (the Optuna storage may be full too: then the next run's recovery queues it)
            with contextlib.suppress(Exception):
                recovery.requeue(study, storage, settings, [trial_id(trial)], "out of space")
            raise
        if tracking.is_transient(exc):
            # the store hiccuped, not the configuration: queued again, not a failure that
            # counts towards max_failures (the retry budget still bounds it)
            why = f"tracking error: {errors.short_reason(exc)}"
            recovery.requeue(study, storage, settings, [trial_id(trial)], mask(why))
            log.warning("trial %d: %s", trial.number, mask(why))
            return "REQUEUED"
        _set_attrs(trial, error=mask(f"{type(exc).__name__}: {exc}")[:1000])
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__,
                    mask(str(exc)), exc_info=log.isEnabledFor(logging.DEBUG))
        return "FAIL"
    return _tell_result(study, trial, result, base.dataset.metric)


def _fold_reporter(trial: optuna.Trial):
    """The pruner's view of a fold trial: the mean over folds after every epoch, reported and
    judged as :func:`pruning_callback` does a single run's validation metric."""
    def report(epoch: int, value: float) -> None:
        if math.isfinite(value):
            trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"Trial was pruned at epoch {epoch}.")
    return report


def _tell_result(study: optuna.Study, trial: optuna.Trial, result, metric: str) -> str:
    """Records the finished run on the trial and tells its objective (non-finite: FAIL).

    A trial scored on folds also keeps the per-fold scores behind its mean and the epochs
    its final models train for."""
    from bench import fold_train

    metrics = {k: v for k, v in {**result.val_metrics, **result.test_metrics}.items()
               if isinstance(v, float) and math.isfinite(v)}
    folds = {}
    if isinstance(result, fold_train.FoldRunResult):
        folds = {fold_train.FOLDS_TAG: result.folds,
                 fold_train.FOLD_VALUES_ATTR: list(result.fold_values),
                 fold_train.TUNED_EPOCHS_TAG: result.tuned_epochs}
    _set_attrs(trial, epochs_trained=result.epochs_trained, wall_time_s=result.wall_time_s,
               n_params=result.n_params, **{tracking.RUN_ID_ATTR: result.run_id}, **metrics,
               **folds)
    if not math.isfinite(result.objective):
        _set_attrs(trial, error=f"objective is {result.objective}")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return "FAIL"
    frozen = study.tell(trial, result.objective, skip_if_finished=True)
    log.info("trial %d finished: %s = %.6g (%d epochs, %.1fs)", trial.number,
             f"val/{metric}", result.objective, result.epochs_trained, result.wall_time_s)
    return frozen.state.name


def _set_attrs(trial: optuna.Trial, **attrs: Any) -> None:
    """Best effort: the trial may already have been failed as stale by another worker."""
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was finished by another worker (stale heartbeat?)", trial.number)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m bench.sweep.worker PAYLOAD.json WORKER_INDEX", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[worker %(process)d] %(message)s")
    report = run_payload(argv[0], int(argv[1]))
    # the parent reads the exit code; this line is for the person watching the sweep
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.states.items())) or "none"
    how = (" (interrupted)" if report.interrupted else
           " (stopped: too many failed trials)" if report.stopped_on_failures else
           " (stopped: tracking store unreachable)" if report.stopped_on_outage else
           " (stopped: out of space)" if report.full_disk else "")
    log.info("worker %d done%s; trials it ran: %s", report.worker, how, states)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
