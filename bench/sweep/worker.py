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

``python -m bench.sweep.worker SPEC.json INDEX`` runs one worker process; ``tune`` starts
them.
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
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import HeartbeatThread
from optuna.trial import TrialState

from bench import tracking
from bench.sweep import devices, interrupt, job, parent
from bench.sweep import space as space_mod
from bench.sweep.storage import mask, open_storage, study_lock
from bench.sweep.strategy import make_pruner, make_sampler, worker_seed

log = logging.getLogger("bench.sweep")


@dataclass
class SweepSpec:
    """Everything a worker needs besides the base config; JSON-serialisable, password-free."""

    study_name: str
    storage: str
    space: str
    n_trials: int
    sampler: str = "tpe"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    seed: int = 0
    n_jobs: int = 1
    heartbeat_interval: int = 10
    grace_period: int | None = None
    max_retry: int = 2
    max_failures: int | None = None
    poll_interval: float = 2.0
    extra_params: list[dict[str, Any]] = field(default_factory=list)
    parent_run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    start_number: int = 0

    def load_space(self) -> space_mod.Space:
        extra = [space_mod.Param(**{**p, "choices": tuple(p.get("choices", ())),
                                    "when": {k: tuple(v) for k, v in p.get("when", {}).items()}})
                 for p in self.extra_params]
        return space_mod.load(self.space).with_overrides(extra)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        return cls(**json.loads(text))


@dataclass
class WorkerReport:
    worker: int
    states: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    stopped_on_failures: bool = False

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1


class LostTrialHandler:
    """Runs when a trial's heartbeat went stale: close its MLflow run, queue a retry."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        will_retry = self.spec.max_retry is None or len(history) < self.spec.max_retry
        log.warning(
            "trial %d lost its worker (no heartbeat for %ss): marked FAIL, %s",
            trial.number, self.spec.grace_period,
            "queued again" if will_retry else
            f"not retried (retry budget {self.spec.max_retry} exhausted)",
        )
        if self.spec.tracking_uri and self.spec.experiment_id:
            try:
                parent.close_child(tracking.client_for(self.spec.tracking_uri),
                                   self.spec.experiment_id, study.study_name, trial.number,
                                   "worker lost: no heartbeat")
            except Exception as exc:  # the retry matters more than the MLflow status
                log.warning("could not close the MLflow run of trial %d: %s", trial.number, exc)
        self.retry(study, trial)


def _quiet_experimental():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
    return ctx


def open_study(spec: SweepSpec, worker: int, max_epochs: int | None) -> optuna.Study:
    storage = open_storage(
        spec.storage,
        heartbeat_interval=spec.heartbeat_interval or None,
        grace_period=spec.grace_period,
        stale_callback=LostTrialHandler(spec),
    )
    return optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=make_sampler(spec.sampler, worker_seed(spec.seed, worker, spec.start_number),
                             spec.sampler_kwargs),
        pruner=make_pruner(spec.pruner, max_epochs),
    )


def _next_trial(study: optuna.Study, spec: SweepSpec) -> tuple[optuna.Trial | None, str]:
    """Under the study lock: a new trial, or why none (``done``/``wait``/``failures``)."""
    backend = study._storage._backend if hasattr(study._storage, "_backend") else study._storage
    if spec.heartbeat_interval:
        optuna.storages.fail_stale_trials(study)
    with study_lock(backend, spec.study_name):
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        failures = sum(t.state == TrialState.FAIL and "error" in t.user_attrs
                       and t.number >= spec.start_number for t in trials)
        if done >= spec.n_trials:
            return None, "done"
        limit = spec.max_failures if spec.max_failures is not None else spec.n_trials
        if failures >= limit:
            return None, "failures"
        if done + running >= spec.n_trials:
            # Room only if a running trial fails; without heartbeats nobody would notice.
            return None, "wait" if spec.heartbeat_interval else "done"
        trial = study.ask()
        if spec.heartbeat_interval:
            backend.record_heartbeat(trial._trial_id)
        return trial, "run"


def _trial_cfg(base: DictConfig, spec: SweepSpec, trial: optuna.Trial,
               values: dict[str, Any]) -> DictConfig:
    cfg = space_mod.apply(base, values)
    retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
    identity = {
        "study_name": spec.study_name,
        "storage": spec.storage,
        "number": trial.number,
        "space": spec.space,
        "pruner": spec.pruner,
        "max_epochs": int(cfg.trainer.max_epochs),
        "parent_run_id": spec.parent_run_id,
        "retry_of": retry_of,
    }
    OmegaConf.update(cfg, "trial", identity, merge=False, force_add=True)
    if cfg.get("run_name") is None:
        OmegaConf.update(cfg, "run_name", f"{spec.study_name}-trial{trial.number}",
                         force_add=True)
    return cfg


def run_one(study: optuna.Study, trial: optuna.Trial, base: DictConfig, spec: SweepSpec,
            space: space_mod.Space) -> str:
    """Runs one trial to its end and tells the study; returns the final state's name."""
    try:
        return _run_one(study, trial, base, spec, space)
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


def _run_one(study: optuna.Study, trial: optuna.Trial, base: DictConfig, spec: SweepSpec,
             space: space_mod.Space) -> str:
    key = (spec.study_name, trial.number)
    heartbeat = HeartbeatThread(trial._trial_id, study._storage) if spec.heartbeat_interval \
        else contextlib.nullcontext()
    with heartbeat:
        try:
            _set_attrs(trial, host=socket.gethostname(), pid=os.getpid(),
                       device=devices.describe(base.trainer))
            values = space.suggest(trial, base)
            cfg = _trial_cfg(base, spec, trial, values)
            log.info("trial %d: %s", trial.number, values)
            job._ACTIVE[key] = trial
            result = job.run_trial(cfg)
        except optuna.TrialPruned as exc:
            reported = trial.storage.get_trial(trial._trial_id).intermediate_values
            _set_attrs(trial, epochs_trained=len(reported))
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            log.info("trial %d pruned (%s)", trial.number, exc)
            return "PRUNED"
        except (KeyboardInterrupt, SystemExit):
            frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if frozen.state == TrialState.FAIL and "error" not in frozen.user_attrs:
                RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry)(study, frozen)
            log.warning("trial %d interrupted: marked FAIL and queued again for the next run",
                        trial.number)
            raise
        except Exception as exc:
            _set_attrs(trial, error=mask(f"{type(exc).__name__}: {exc}")[:1000])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__,
                        mask(str(exc)), exc_info=log.isEnabledFor(logging.DEBUG))
            return "FAIL"
        finally:
            job._ACTIVE.pop(key, None)
        metrics = {k: v for k, v in {**result.val_metrics, **result.test_metrics}.items()
                   if isinstance(v, float) and math.isfinite(v)}
        _set_attrs(trial, epochs_trained=result.epochs_trained, wall_time_s=result.wall_time_s,
                   n_params=result.n_params, **{parent.RUN_ID_ATTR: result.run_id}, **metrics)
        if not math.isfinite(result.objective):
            _set_attrs(trial, error=f"objective is {result.objective}")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return "FAIL"
        frozen = study.tell(trial, result.objective, skip_if_finished=True)
        log.info("trial %d finished: %s = %.6g (%d epochs, %.1fs)", trial.number,
                 f"val/{base.dataset.metric}", result.objective, result.epochs_trained,
                 result.wall_time_s)
        return frozen.state.name


def _set_attrs(trial: optuna.Trial, **attrs: Any) -> None:
    """Best effort: the trial may already have been failed as stale by another worker."""
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was finished by another worker (stale heartbeat?)", trial.number)


def work(spec: SweepSpec, base: DictConfig, worker: int = 0) -> WorkerReport:
    """The worker loop; returns what this worker did. Re-raises KeyboardInterrupt."""
    report = WorkerReport(worker)
    space = spec.load_space()
    space.check(base)
    ctx = _quiet_experimental()
    try:
        with interrupt.deferred():
            _loop(spec, base, worker, space, report)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        ctx.__exit__(None, None, None)
    return report


def _loop(spec: SweepSpec, base: DictConfig, worker: int, space, report: WorkerReport) -> None:
    study = open_study(spec, worker, int(base.trainer.max_epochs))
    while True:
        interrupt.check()
        trial, why = _next_trial(study, spec)
        if why == "done":
            break
        if why == "failures":
            report.stopped_on_failures = True
            log.error("study %s: %s trials failed with errors in this session; stopping "
                      "(max_failures). See the trials' 'error' attribute.",
                      spec.study_name, spec.max_failures or spec.n_trials)
            break
        if trial is None:
            time.sleep(spec.poll_interval)
            continue
        try:
            report.count(run_one(study, trial, base, spec, space))
        except SystemExit as exc:  # Lightning turns a KeyboardInterrupt into exit(1)
            raise KeyboardInterrupt from exc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m bench.sweep.worker SPEC.json WORKER_INDEX", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[worker %(process)d] %(message)s")
    with open(argv[0]) as fh:
        payload = json.load(fh)
    spec = SweepSpec(**payload["spec"])
    base = OmegaConf.create(payload["cfg"])
    report = work(spec, base, int(argv[1]))
    print("BENCH_WORKER_REPORT " + json.dumps(dataclasses.asdict(report)), flush=True)
    return 130 if report.interrupted else (3 if report.stopped_on_failures else 0)


if __name__ == "__main__":
    sys.exit(main())
