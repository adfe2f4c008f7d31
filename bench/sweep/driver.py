"""Driving a sweep: the study and its MLflow parent, the workers, and the summary at the end."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench import tracking
from bench.config import compose
from bench.errors import ConfigError, SweepError
from bench.sweep import devices as devices_mod
from bench.sweep import parent as parent_mod
from bench.sweep import space as space_mod
from bench.sweep.settings import SweepSettings
from bench.sweep.storage import hide_password, mask, open_storage, resolve, study_lock
from bench.sweep.strategy import make_pruner, make_sampler, pruner_spec
from bench.sweep.worker import WorkerReport, work, write_payload

log = logging.getLogger("bench.sweep")
TAGS = tracking.TAGS
STOPPED_ON_FAILURES = WorkerReport(0, stopped_on_failures=True).exit_code


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
    base = _absolute_paths(base)
    settings = dataclasses.replace(
        settings,
        study_name=settings.study_name or default_study_name(base, settings.space),
        storage=hide_password(resolve(settings.storage)),
        pruner=pruner_spec(settings.pruner),
        grace_period=settings.effective_grace_period,
        tracking_uri=base.tracking.uri,
    )
    study, storage = create_study(settings, base)
    uri, client, exp_id = tracking.open_experiment(
        base.tracking.uri, base.tracking.experiment, base.tracking.artifact_root)
    with study_lock(storage, settings.study_name):
        parent_id = parent_mod.ensure_parent(study, client, exp_id, _parent_tags(base, settings))
    settings = dataclasses.replace(settings, parent_run_id=parent_id, experiment_id=exp_id,
                                   start_number=len(study.get_trials(deepcopy=False)))
    _log_start(settings, uri)
    info = {"storage": mask(settings.storage),
            "sampler": f"{settings.sampler} (seed {settings.seed})",
            "pruner": json.dumps(settings.pruner), "space": str(settings.space),
            "workers": settings.n_jobs, "MLflow": mask(uri)}
    return PreparedSweep(settings, base, client, info)


def _check(base: DictConfig, settings: SweepSettings) -> None:
    if settings.n_trials < 1 or settings.n_jobs < 1:
        raise ConfigError(f"n_trials={settings.n_trials}, n_jobs={settings.n_jobs}: "
                          "both must be >= 1")
    space_mod.load(settings.space, settings.params).check(base)
    make_pruner(settings.pruner, int(base.trainer.max_epochs))  # fail now on a bad pruner


def _absolute_paths(base: DictConfig) -> DictConfig:
    base = base.copy()
    OmegaConf.update(base, "tracking.uri", tracking.resolve_uri(base.tracking.uri), merge=False)
    return base


def create_study(settings: SweepSettings, base: DictConfig):
    """Creates the study once (an SQLite file is created here, before any worker starts)."""
    from bench.models import arch_name

    direction = base.dataset.direction
    storage = open_storage(settings.storage)
    study = optuna.create_study(
        study_name=settings.study_name, storage=storage, direction=direction,
        load_if_exists=True,
        sampler=make_sampler(settings.sampler, settings.seed, settings.sampler_kwargs),
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {settings.study_name!r} in {mask(settings.storage)} optimises "
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
        TAGS["optuna_storage"]: mask(settings.storage),
        "optuna_n_trials": settings.n_trials, **settings.parent_tags,
    }


def _log_start(settings: SweepSettings, uri: str) -> None:
    log.info("study %s in %s: %d trials wanted, %d workers, sampler %s, pruner %s; watch it "
             "with: optuna-dashboard %s", settings.study_name, mask(settings.storage),
             settings.n_trials, settings.n_jobs, settings.sampler, settings.pruner["name"],
             mask(settings.storage))
    if settings.n_jobs > 1 and uri.startswith("sqlite"):
        log.warning("%d workers writing one SQLite MLflow store may hit 'database is locked'; "
                    "use an MLflow server for parallel sweeps (docs/sweeps.md)",
                    settings.n_jobs)


# -- running ---------------------------------------------------------------------------------


def run_sweep(base: DictConfig, settings: SweepSettings, *, in_process: bool | None = None,
              shutdown_timeout: float = 120.0) -> optuna.Study:
    """Tunes an already composed config (the Hydra sweeper's entry).

    One worker runs in this process unless ``in_process=False``; several run as processes,
    placed by ``settings.devices`` (:mod:`bench.sweep.devices`).
    """
    prep = prepare(base, settings)
    started = time.perf_counter()
    interrupted = False
    if in_process is None:
        in_process = settings.n_jobs == 1
    try:
        if in_process:
            interrupted = _run_in_process(prep)
        else:
            interrupted = _run_processes(prep, shutdown_timeout)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        study = finish(prep, interrupted=interrupted, started=started)
    if interrupted:
        log.warning("sweep %s interrupted; run the same command again to resume it",
                    prep.settings.study_name)
        raise KeyboardInterrupt
    check_outcome(study, prep.settings)
    return study


def _run_in_process(prep: PreparedSweep) -> bool:
    """One worker here; SIGTERM ends it as Ctrl-C would."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main_thread:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    base = prep.base
    chosen = devices_mod.in_process_devices(prep.settings.devices,
                                            str(base.trainer.accelerator))
    if chosen is not None:
        base = base.copy()
        OmegaConf.update(base, "trainer.devices", chosen, merge=False)
    try:
        return work(prep.settings, base, 0).interrupted
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run_processes(prep: PreparedSweep, shutdown_timeout: float) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        payload = write_payload(prep.settings, prep.base, Path(tmp))
        placements = devices_mod.plan(prep.settings.n_jobs, prep.settings.devices,
                                      str(prep.base.trainer.accelerator))
        procs = _spawn(payload, placements)
        interrupted = _wait(procs, shutdown_timeout)
        if any(p.returncode == STOPPED_ON_FAILURES for p in procs):
            log.error("a worker stopped after too many failed trials (max_failures)")
        return interrupted


def _spawn(payload: Path, placements: list[devices_mod.Placement]) -> list[subprocess.Popen]:
    procs = []
    for i, place in enumerate(placements):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.sweep.worker", str(payload), str(i)],
            env={**os.environ, **place.env}, cwd=str(tracking.launch_dir()),
        ))
        log.info("worker %d started (pid %d) on %s", i, procs[-1].pid, place.device)
    return procs


def _wait(procs: list[subprocess.Popen], shutdown_timeout: float) -> bool:
    """Waits for the workers; on Ctrl-C lets them end their trials, then returns True."""
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
        for i, p in enumerate(procs):
            if p.returncode not in (0, 130):
                log.warning("worker %d (pid %d) ended with code %s; its running trial, if "
                            "any, was failed through its heartbeat and retried by the others",
                            i, p.pid, p.returncode)
        return any(p.returncode == 130 for p in procs)
    except KeyboardInterrupt:
        log.warning("interrupted: letting %d worker(s) end their trials (Ctrl-C again to kill)",
                    sum(p.poll() is None for p in procs))
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + shutdown_timeout
        try:
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        for p in procs:
            if p.poll() is None:
                p.kill()
        return True


def _sigterm_as_interrupt(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


# -- finishing -------------------------------------------------------------------------------


def finish(prep: PreparedSweep, *, interrupted: bool, started: float) -> optuna.Study:
    """Summarises the study into its MLflow parent run and returns the study."""
    s = prep.settings
    study = optuna.load_study(study_name=s.study_name, storage=open_storage(s.storage))
    info = {**prep.info, "wall time of this sweep (s)": round(time.perf_counter() - started, 1)}
    try:
        parent_mod.finalize(study, prep.client, s.parent_run_id, n_trials=s.n_trials,
                            info=info, interrupted=interrupted)
    except Exception as exc:  # the study is safe in its storage; the summary can be redone
        log.warning("could not write the study summary to MLflow: %s", mask(str(exc)))
    return study


def check_outcome(study: optuna.Study, settings: SweepSettings) -> None:
    """Raises when workers gave up on failures, so a caller cannot mistake it for success."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    if done >= settings.n_trials:
        return
    errors = [f"trial {t.number}: {t.user_attrs['error']}" for t in trials
              if t.state.name == "FAIL" and "error" in t.user_attrs
              and t.number >= settings.start_number]
    raise SweepError(
        f"study {settings.study_name}: {done}/{settings.n_trials} trials finished; "
        f"{len(errors)} failed with errors (max_failures reached), e.g.\n  "
        + "\n  ".join(errors[:5])
    )


# -- Python entry ----------------------------------------------------------------------------


def tune(overrides: Sequence[str], space: str, *, in_process: bool | None = None,
         shutdown_timeout: float = 120.0, **settings: Any) -> optuna.Study:
    """Tunes the run composed from ``overrides``; see the ``bench.sweep`` module docstring.

    ``settings`` are :class:`~bench.sweep.settings.SweepSettings` fields; sweep syntax in
    ``overrides`` (``optim.lr=interval(...)``) adds search dimensions.
    """
    fixed, sweeps = space_mod.split_overrides(overrides)
    params = {**dict(settings.pop("params", None) or {}), **sweeps}
    frozen = SweepSettings(space=str(space), params=params, **_plain(settings))
    return run_sweep(compose(fixed), frozen, in_process=in_process,
                     shutdown_timeout=shutdown_timeout)


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords as the settings hold them (``parent_tags=None`` means none)."""
    out = dict(settings)
    for key in ("parent_tags", "sampler_kwargs"):
        if out.get(key) is None:
            out.pop(key, None)
    return out
