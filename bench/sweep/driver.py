"""Driving a sweep: the study and its MLflow parent, the workers, and the summary at the end."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench import errors, interrupt, scratch, tracking
from bench.config import compose
from bench.errors import ConfigError, SweepError
from bench.stores import StoreAddress, launch_dir, mask
from bench.sweep import devices as devices_mod
from bench.sweep import parent as parent_mod
from bench.sweep import recovery
from bench.sweep import space as space_mod
from bench.sweep import worker as worker_mod
from bench.sweep.settings import SweepSettings
from bench.sweep.storage import open_storage, study_lock
from bench.sweep.strategy import make_pruner, make_sampler, pruner_spec
from bench.sweep.worker import (
    STOPPED_ON_FAILURES,
    STOPPED_ON_FULL_DISK,
    STOPPED_ON_OUTAGE,
    work,
    write_payload,
)
from bench.vocab import count_finished

log = logging.getLogger("bench.sweep")
TAGS = tracking.TAGS


@dataclass(frozen=True)
class PreparedSweep:
    """A sweep ready for workers: its settings as prepared, the absolute-path base config,
    the MLflow client and the facts the summary lists."""

    settings: SweepSettings
    base: DictConfig
    client: Any
    info: dict[str, Any]


def default_study_name(cfg: DictConfig, space: str) -> str:
    from bench.models import arch_name

    return f"{cfg.dataset.name}-{arch_name(cfg.model)}-{Path(str(space)).stem}"


# -- preparing -------------------------------------------------------------------------------


def prepare(base: DictConfig, settings: SweepSettings) -> PreparedSweep:
    """Creates (or finds) the study and its MLflow parent run, once, before any worker.

    Steps: check the settings and the space against the config; make every path absolute
    (workers may run elsewhere); fix the study's name and storage; create the study; open
    the MLflow parent run under the study lock; note the trials already there.
    """
    _check(base, settings)
    store, base = _resolved_store(base)
    # a tracking server that is down fails the sweep before it creates or touches the study
    tracking.check_reachable(store)
    settings = dataclasses.replace(
        settings,
        study_name=settings.study_name or default_study_name(base, settings.space),
        storage=str(StoreAddress.optuna(settings.storage)),
        pruner=pruner_spec(settings.pruner),
        grace_period=settings.effective_grace_period,
        tracking_uri=str(store),
    )
    study, storage = create_study(settings, base)
    client, exp_id = tracking.open_experiment(
        store, base.tracking.experiment, base.tracking.artifact_root)
    with study_lock(storage, settings.study_name):
        parent_id = parent_mod.ensure_parent(study, client, exp_id, _parent_tags(base, settings))
    settings = dataclasses.replace(settings, parent_run_id=parent_id, experiment_id=exp_id,
                                   start_number=len(study.get_trials(deepcopy=False)))
    _log_start(settings, store)
    info = {"storage": settings.storage,
            "sampler": f"{settings.sampler} (seed {settings.seed})",
            "pruner": json.dumps(settings.pruner), "space": str(settings.space),
            "workers": settings.n_jobs, "MLflow": str(store)}
    return PreparedSweep(settings, base, client, info)


def _check(base: DictConfig, settings: SweepSettings) -> None:
    """What the settings' own checks (:meth:`SweepSettings.checked`) cannot see: the space and
    the pruner against the composed config."""
    space_mod.load(settings.space, settings.params).check(base)
    make_pruner(settings.pruner, int(base.trainer.max_epochs))  # fail now on a bad pruner


def _resolved_store(base: DictConfig) -> tuple[StoreAddress, DictConfig]:
    """The MLflow store, resolved here for every worker: the config they are given names it
    (masked, absolute), so workers elsewhere open the same store and none reads the
    environment again."""
    store = tracking.store_of(base)
    base = base.copy()
    OmegaConf.update(base, "tracking.uri", str(store), merge=False)
    return store, base


def create_study(settings: SweepSettings, base: DictConfig):
    """Creates the study once (an SQLite file is created here, before any worker starts)."""
    from bench.models import arch_name

    direction = base.dataset.direction
    storage = open_storage(StoreAddress.optuna(settings.storage))
    study = optuna.create_study(
        study_name=settings.study_name, storage=storage, direction=direction,
        load_if_exists=True,
        sampler=make_sampler(settings.sampler, settings.seed, settings.sampler_kwargs),
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {settings.study_name!r} in {settings.storage} optimises "
            f"{study.direction.name.lower()}, but dataset.direction is {direction!r}; "
            "use another study_name"
        )
    attrs = {"dataset": base.dataset.name, "arch": arch_name(base.model),
             "space": str(settings.space), "metric": f"val/{base.dataset.metric}"}
    with study_lock(storage, settings.study_name):
        for k, v in attrs.items():
            if study.user_attrs.get(k) is None:
                study.set_user_attr(k, v)
    return study, storage


def _parent_tags(base: DictConfig, settings: SweepSettings) -> dict[str, Any]:
    from bench.models import arch_name

    return {
        **tracking.standard_tags(base, arch_name(base.model)),
        TAGS["optuna_space"]: str(settings.space), "optuna_sampler": settings.sampler,
        "optuna_pruner": json.dumps(settings.pruner),
        TAGS["optuna_storage"]: settings.storage,
        "optuna_n_trials": settings.n_trials, **settings.parent_tags,
    }


def _log_start(settings: SweepSettings, store: StoreAddress) -> None:
    # the dashboard line is pasted into a shell: the password as a variable, never in clear
    dashboard, note = StoreAddress.optuna(settings.storage).shell_form()
    log.info("study %s in %s: %d trials wanted, %d workers, sampler %s, pruner %s; watch it "
             "with: optuna-dashboard %s%s", settings.study_name, settings.storage,
             settings.n_trials, settings.n_jobs, settings.sampler, settings.pruner["name"],
             dashboard, f"   {note}" if note else "")
    if settings.n_jobs > 1 and store.is_sqlite:
        log.warning("%d workers writing one SQLite MLflow store may hit 'database is locked'; "
                    "use an MLflow server for parallel sweeps (docs/sweeps.md)",
                    settings.n_jobs)


# -- running ---------------------------------------------------------------------------------


def run_sweep(base: DictConfig, settings: SweepSettings, *, in_process: bool | None = None,
              shutdown_timeout: float = 120.0) -> optuna.Study:
    """Tunes an already composed config (the Hydra sweeper's entry).

    One worker runs in this process unless ``in_process=False``; several run as processes,
    placed by ``settings.devices`` (:mod:`bench.sweep.devices`), and replaced when they die.
    Every way out closes the MLflow parent run (FINISHED, KILLED or FAILED, never RUNNING);
    a stop by Ctrl-C or SIGTERM raises ``KeyboardInterrupt`` once the workers have ended
    their trials (:func:`bench.interrupt.exit_code` gives the exit status).
    """
    prep = prepare(base, settings)
    started = time.perf_counter()
    interrupted, stopped = False, ""
    if in_process is None:
        in_process = settings.n_jobs == 1
    try:
        if in_process:
            interrupted, stopped = _run_in_process(prep)
        else:
            interrupted, stopped = _run_processes(prep, shutdown_timeout)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException as exc:
        stopped = f"{type(exc).__name__}: {mask(str(exc))}"[:1000]
        raise
    finally:
        interrupted = interrupted or interrupt.received() is not None
        if interrupted:
            stopped = f"stopped by {interrupt.signal_name()}"
        study = finish(prep, interrupted=interrupted, started=started, stopped=stopped)
    if interrupted:
        log.warning("sweep %s %s; run the same command again to resume it",
                    prep.settings.study_name, stopped)
        raise KeyboardInterrupt
    return check_outcome(study, prep.settings, stopped)


_OUTAGE_STOP = ("the tracking store did not answer for {:.0f} s (outage_wait); the trials it "
                "cost are queued again: run the same command once it is back")


def _run_in_process(prep: PreparedSweep) -> tuple[bool, str]:
    """One worker here; SIGTERM ends it as Ctrl-C would, at the next safe point."""
    base = prep.base
    chosen = devices_mod.in_process_devices(prep.settings.devices,
                                            str(base.trainer.accelerator))
    if chosen is not None:
        base = base.copy()
        OmegaConf.update(base, "trainer.devices", chosen, merge=False)
    with interrupt.deferred():
        report = work(prep.settings, base, 0)
    if report.full_disk:
        raise errors.OutOfSpaceError(report.full_disk)
    return report.interrupted, (_OUTAGE_STOP.format(prep.settings.outage_wait)
                                if report.stopped_on_outage else "")


def _run_processes(prep: PreparedSweep, shutdown_timeout: float) -> tuple[bool, str]:
    """Worker processes under supervision; returns (interrupted, why it stopped early)."""
    # removed however the sweep ends; one left by a killed sweep goes when the next starts
    with scratch.folder("bench-sweep") as tmp:
        payload = write_payload(prep.settings, prep.base, Path(tmp))
        placements = devices_mod.plan(prep.settings.n_jobs, prep.settings.devices,
                                      str(prep.base.trainer.accelerator))
        return Supervisor(prep, payload, placements).run(shutdown_timeout)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts the workers, replaces those that die, and forwards a stop to them.

    A worker that dies (killed by the OOM killer, SIGKILL, a crash) is replaced at once, up
    to ``max_restarts`` times in this sweep, and its running trial is queued again without
    waiting for its heartbeat to go stale (its pid is on the trial). Ctrl-C or SIGTERM to
    the sweep is forwarded to every worker as the same signal; the workers end their trials
    at the next batch, queue them again and exit; after ``shutdown_timeout`` the rest are
    killed and their trials recovered.
    """

    def __init__(self, prep: PreparedSweep, payload: Path,
                 placements: list[devices_mod.Placement]):
        self.prep, self.payload, self.placements = prep, payload, placements
        self.procs: list[subprocess.Popen] = []
        self.deaths: list[str] = []
        self.restarts = 0

    def spawn(self, i: int) -> subprocess.Popen:
        place = self.placements[i]
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sweep.worker_entry", str(self.payload), str(i),
             str(os.getpid())],
            env={**os.environ, **place.env}, cwd=str(launch_dir()),
        )
        log.info("worker %d started (pid %d) on %s", i, proc.pid, place.device)
        return proc

    def run(self, shutdown_timeout: float) -> tuple[bool, str]:
        try:
            with interrupt.raising():
                self.procs = [self.spawn(i) for i in range(len(self.placements))]
                self.watch()
        except KeyboardInterrupt:
            self.stop(shutdown_timeout)
            return True, ""
        if any(p.returncode == STOPPED_ON_FAILURES for p in self.procs):
            return False, "workers stopped after max_failures trials failed with errors"
        if any(p.returncode == STOPPED_ON_FULL_DISK for p in self.procs):
            return False, "out of space: a disk the sweep writes to is full (the workers said " \
                          "which); free space there, then run the same command"
        if any(p.returncode == STOPPED_ON_OUTAGE for p in self.procs):
            return False, _OUTAGE_STOP.format(self.prep.settings.outage_wait)
        if self.deaths:
            limit = self.prep.settings.max_restarts
            return False, (f"{len(self.deaths)} worker deaths ({'; '.join(self.deaths[:4])}"
                           f"{'; ...' if len(self.deaths) > 4 else ''}), restart limit "
                           f"max_restarts={limit} reached")
        return False, ""

    def watch(self) -> None:
        settled: set[int] = set()
        while len(settled) < len(self.procs):
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is None or i in settled:
                    continue
                if code in (0, STOPPED_ON_FAILURES, STOPPED_ON_OUTAGE, STOPPED_ON_FULL_DISK) or \
                        interrupt.received() is not None:
                    settled.add(i)
                    continue
                self.deaths.append(f"worker {i} (pid {p.pid}) {_describe_exit(code)}")
                log.warning("worker %d (pid %d) %s", i, p.pid, _describe_exit(code))
                self.recover(p.pid)
                if self.restarts < self.prep.settings.max_restarts:
                    self.restarts += 1
                    self.procs[i] = self.spawn(i)
                    log.warning("worker %d replaced (restart %d of at most %d)", i,
                                self.restarts, self.prep.settings.max_restarts)
                else:
                    settled.add(i)
            time.sleep(0.5)

    def recover(self, pid: int) -> None:
        """Queues the dead worker's running trial again (no need to wait for its heartbeat)."""
        s = self.prep.settings
        try:
            storage = open_storage(StoreAddress.optuna(s.storage))
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            lost = recovery.requeue(study, storage, s,
                                    recovery.trial_ids_of_dead_process(study, pid),
                                    f"worker process {pid} died")
            worker_mod.close_lost_runs(s, lost, f"worker lost: process {pid} died")
        except Exception as exc:   # the heartbeat path recovers it later
            log.warning("could not recover the trials of worker pid %d now: %s", pid,
                        mask(str(exc)))

    def stop(self, shutdown_timeout: float) -> None:
        signum = interrupt.received() or signal.SIGINT
        running = [p for p in self.procs if p.poll() is None]
        log.warning("stopping: %s forwarded to %d worker(s), which end their trials (Ctrl-C "
                    "again to kill them)", signal.Signals(signum).name, len(running))
        for p in running:
            p.send_signal(signum)
        deadline = time.monotonic() + shutdown_timeout
        try:
            with interrupt.raising():
                while any(p.poll() is None for p in running) and time.monotonic() < deadline:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait()
                self.recover(p.pid)


# -- finishing -------------------------------------------------------------------------------


def finish(prep: PreparedSweep, *, interrupted: bool, started: float,
           stopped: str = "") -> optuna.Study | None:
    """Summarises the study into its MLflow parent run (closing it) and returns the study."""
    s = prep.settings
    try:
        study = optuna.load_study(study_name=s.study_name, storage=open_storage(StoreAddress.optuna(s.storage)))
    except Exception as exc:  # the storage itself failed; the error on its way out says how
        log.warning("could not read the study back to close its MLflow parent: %s",
                    mask(str(exc)))
        _close_parent(prep, "KILLED" if interrupted else "FAILED", stopped or str(exc))
        return None
    info = {**prep.info, "wall time of this sweep (s)": round(time.perf_counter() - started, 1)}
    if not interrupted:
        stopped = shortfall(study, s, stopped)
    try:
        parent_mod.finalize(study, prep.client, s.parent_run_id, n_trials=s.n_trials,
                            info=info, interrupted=interrupted, stopped=stopped)
    except Exception as exc:  # the study is safe in its storage; the summary can be redone
        log.warning("could not write the study summary to MLflow: %s",
                    mask(errors.short_reason(exc)))
        done = count_finished(t.state for t in study.get_trials(deepcopy=False))
        _close_parent(prep, "FINISHED" if done >= s.n_trials else
                      "KILLED" if interrupted else "FAILED", stopped)
    return study


def _close_parent(prep: PreparedSweep, status: str, why: str) -> None:
    try:
        if why and status != "FINISHED":
            tracking.log_tags(prep.client, prep.settings.parent_run_id,
                              {TAGS["error"]: mask(why)[:1000]})
        prep.client.set_terminated(prep.settings.parent_run_id, status)
    except Exception as exc:
        log.warning("could not close the MLflow parent run %s: %s",
                    prep.settings.parent_run_id, mask(errors.short_reason(exc)))


def resume_command() -> str:
    """The command that resumes this sweep, as the user typed it (password masked)."""
    argv0 = Path(sys.argv[0]).as_posix() if sys.argv and sys.argv[0] else ""
    for module in ("bench.study", "bench"):
        stem = module.replace(".", "/")
        if argv0.endswith((f"{stem}/__main__.py", f"{stem}.py")):
            return mask(shlex.join(["python", "-m", module, *sys.argv[1:]]))
    return "the same command"


def check_outcome(study: optuna.Study | None, settings: SweepSettings,
                  stopped: str = "") -> optuna.Study:
    """Raises when the sweep ended short of its trials, so a caller cannot mistake it for
    success; the message says why in one or two lines, and how to resume. Returns the study
    otherwise."""
    if study is None:
        raise SweepError(f"study {settings.study_name}: {stopped or 'stopped'}; "
                         f"resume with: {resume_command()}")
    why = shortfall(study, settings, stopped)
    if why:
        raise SweepError(f"study {settings.study_name}: {why}.\nResume with: {resume_command()}")
    return study


def shortfall(study: optuna.Study, settings: SweepSettings, stopped: str = "") -> str:
    """Why the study holds fewer finished trials than asked ("" when it holds them all)."""
    trials = study.get_trials(deepcopy=False)
    done = count_finished(t.state for t in trials)
    if done >= settings.n_trials:
        return ""
    errors = [f"trial {t.number}: {t.user_attrs['error']}" for t in trials
              if t.state.name == "FAIL" and "error" in t.user_attrs
              and t.number >= settings.start_number]
    queued = sum(t.state.name == "WAITING" for t in trials)
    why = stopped or (f"{len(errors)} trials failed with errors (max_failures)" if errors
                      else "the workers stopped early")
    example = f"; first error: {errors[0][:300]}" if errors else ""
    return f"{done}/{settings.n_trials} trials finished, {queued} queued: {why}{example}"


# -- Python entry ----------------------------------------------------------------------------


def tune(overrides: Sequence[str], space: str, *, in_process: bool | None = None,
         shutdown_timeout: float = 120.0, **settings: Any) -> optuna.Study:
    """Tunes the run composed from ``overrides``; see the ``bench.sweep`` module docstring.

    ``settings`` are :class:`~bench.sweep.settings.SweepSettings` fields; sweep syntax in
    ``overrides`` (``optim.lr=interval(...)``) adds search dimensions.
    """
    fixed, sweeps = space_mod.split_overrides(overrides)
    params = {**dict(settings.pop("params", None) or {}), **sweeps}
    frozen = SweepSettings.checked({"space": str(space), "params": params, **_plain(settings)},
                                   source="the keywords of bench.sweep.tune")
    return run_sweep(compose(fixed), frozen, in_process=in_process,
                     shutdown_timeout=shutdown_timeout)


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords as the settings hold them (``parent_tags=None`` means none)."""
    out = dict(settings)
    for key in ("parent_tags", "sampler_kwargs"):
        if out.get(key) is None:
            out.pop(key, None)
    return out
