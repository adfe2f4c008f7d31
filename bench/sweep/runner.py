"""Starting a sweep: the study, its MLflow parent, the workers, and the summary at the end."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench import tracking
from bench.data.base import ConfigError
from bench.sweep import devices as devices_mod
from bench.sweep import parent as parent_mod
from bench.sweep import space as space_mod
from bench.sweep.storage import hide_password, mask, open_storage, resolve, study_lock
from bench.sweep.strategy import make_pruner, make_sampler, pruner_spec
from bench.sweep.worker import SweepSpec, work

log = logging.getLogger("bench.sweep")
ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"


def compose(overrides: Sequence[str]) -> DictConfig:
    """The run config for ``overrides``, as ``python -m bench <overrides>`` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def default_study_name(cfg: DictConfig, space: str) -> str:
    from bench.models import arch_name

    return f"{cfg.dataset.name}-{arch_name(cfg.model)}-{Path(str(space)).stem}"


def create_study(spec: SweepSpec, direction: str, attrs: Mapping[str, Any]) -> optuna.Study:
    """Creates the study once (an SQLite file is created here, before any worker starts)."""
    storage = open_storage(spec.storage)
    study = optuna.create_study(
        study_name=spec.study_name, storage=storage, direction=direction, load_if_exists=True,
        sampler=make_sampler(spec.sampler, spec.seed, spec.sampler_kwargs),
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {spec.study_name!r} in {mask(spec.storage)} optimises "
            f"{study.direction.name.lower()}, but dataset.direction is {direction!r}; "
            "use another study_name"
        )
    with study_lock(storage, spec.study_name):
        for k, v in attrs.items():
            if study.user_attrs.get(k) is None:
                study.set_user_attr(k, v)
    return study


def write_payload(prep: Prepared, folder: Path) -> Path:
    """The spec and base config for worker processes or jobs (no password inside)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sweep_{prep.spec.study_name}.json"
    path.write_text(json.dumps({"spec": dataclasses.asdict(prep.spec),
                                "cfg": OmegaConf.to_container(prep.base)}))
    return path


def _spawn(spec_file: Path, placements: list[devices_mod.Placement]) -> list[subprocess.Popen]:
    procs = []
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    for i, place in enumerate(placements):
        env = {**os.environ, "PYTHONPATH": pythonpath, **place.env}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.sweep.worker", str(spec_file), str(i)],
            env=env, cwd=str(tracking.launch_dir()),
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


@dataclass
class Prepared:
    """A sweep ready for workers: its spec, the absolute-path base config, MLflow client."""

    spec: SweepSpec
    base: DictConfig
    client: Any
    info: dict[str, Any]


def prepare_sweep(
    base: DictConfig,
    *,
    space: str,
    study_name: str | None = None,
    storage: str | None = None,
    n_trials: int = 20,
    n_jobs: int = 1,
    sampler: str = "tpe",
    sampler_kwargs: Mapping[str, Any] | None = None,
    pruner: str | Mapping[str, Any] | None = "median",
    seed: int = 0,
    parent_tags: Mapping[str, Any] | None = None,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    max_retry: int = 2,
    max_failures: int | None = None,
    extra_params: Sequence[space_mod.Param] = (),
) -> Prepared:
    """Creates (or finds) the study and its MLflow parent run, once, before any worker."""
    if n_trials < 1 or n_jobs < 1:
        raise ConfigError(f"n_trials={n_trials}, n_jobs={n_jobs}: both must be >= 1")
    sp = space_mod.load(space).with_overrides(list(extra_params))
    sp.check(base)
    base = base.copy()
    uri = tracking.resolve_uri(base.tracking.uri)
    # Workers may run elsewhere (job dirs, other nodes): every path they need is absolute.
    OmegaConf.update(base, "tracking.uri", uri, merge=False)
    study_name = study_name or default_study_name(base, space)
    url = hide_password(resolve(storage))
    spec = SweepSpec(
        study_name=study_name, storage=url, space=str(space), n_trials=int(n_trials),
        sampler=sampler, sampler_kwargs=dict(sampler_kwargs or {}),
        pruner=pruner_spec(pruner), seed=int(seed), n_jobs=int(n_jobs),
        heartbeat_interval=int(heartbeat_interval),
        grace_period=int(grace_period or 3 * int(heartbeat_interval)),
        max_retry=max_retry, max_failures=max_failures,
        extra_params=[_param_dict(p) for p in extra_params],
    )
    make_pruner(spec.pruner, int(base.trainer.max_epochs))  # fail now on a bad pruner spec
    from bench.models import arch_name

    attrs = {"dataset": base.dataset.name, "arch": arch_name(base.model), "space": str(space),
             "metric": f"val/{base.dataset.metric}"}
    study = create_study(spec, base.dataset.direction, attrs)
    client = tracking.client_for(uri)
    exp_id = tracking.ensure_experiment(
        client, base.tracking.experiment,
        base.tracking.artifact_root or tracking.default_artifact_root(uri),
    )
    tags = {
        "dataset": base.dataset.name, "arch": attrs["arch"], "cell": base.model.cell,
        "topology": base.model.get("topology", "none"), "metric": base.dataset.metric,
        "direction": base.dataset.direction, "study": base.get("study"),
        "optuna_space": str(space), "optuna_sampler": sampler,
        "optuna_pruner": json.dumps(spec.pruner), "optuna_storage": mask(url),
        "optuna_n_trials": n_trials, "git_sha": tracking.git_sha(), **(parent_tags or {}),
    }
    backend = study._storage._backend if hasattr(study._storage, "_backend") else study._storage
    with study_lock(backend, study_name):
        spec.parent_run_id = parent_mod.ensure_parent(study, client, exp_id, tags)
    spec.experiment_id, spec.tracking_uri = exp_id, uri
    spec.start_number = len(study.get_trials(deepcopy=False))
    log.info("study %s in %s: %d trials wanted, %d workers, sampler %s, pruner %s; watch it "
             "with: optuna-dashboard %s", study_name, mask(url), n_trials, n_jobs, sampler,
             spec.pruner["name"], mask(url))
    if n_jobs > 1 and uri.startswith("sqlite"):
        log.warning("%d workers writing one SQLite MLflow store may hit 'database is locked'; "
                    "use an MLflow server for parallel sweeps (docs/sweeps.md)", n_jobs)
    info = {"storage": mask(url), "sampler": f"{sampler} (seed {seed})",
            "pruner": json.dumps(spec.pruner), "space": str(space), "workers": n_jobs,
            "MLflow": mask(uri)}
    return Prepared(spec, base, client, info)


def finish_sweep(prep: Prepared, *, interrupted: bool, started: float) -> optuna.Study:
    """Summarises the study into its MLflow parent run and returns the study."""
    spec = prep.spec
    study = optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage))
    info = {**prep.info, "session wall time (s)": round(time.perf_counter() - started, 1)}
    try:
        parent_mod.finalize(study, prep.client, spec.parent_run_id, n_trials=spec.n_trials,
                            info=info, interrupted=interrupted)
    except Exception as exc:  # the study is safe in its storage; the summary can be redone
        log.warning("could not write the study summary to MLflow: %s", mask(str(exc)))
    return study


def run_sweep(
    base: DictConfig,
    *,
    space: str,
    n_jobs: int = 1,
    devices: Any = None,
    shutdown_timeout: float = 120.0,
    in_process: bool | None = None,
    **settings: Any,
) -> optuna.Study:
    """``tune`` on an already composed config (the Hydra sweeper's entry).

    ``settings`` are :func:`prepare_sweep`'s keywords. One worker runs in this process
    unless ``in_process=False``; several run as processes, placed by ``devices``
    (:mod:`bench.sweep.devices`).
    """
    prep = prepare_sweep(base, space=space, n_jobs=n_jobs, **settings)
    started = time.perf_counter()
    interrupted = False
    if in_process is None:
        in_process = n_jobs == 1
    try:
        if in_process:
            main_thread = _is_main_thread()
            previous = signal.getsignal(signal.SIGTERM)
            if main_thread:
                signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
            base = prep.base
            chosen = devices_mod.in_process_devices(devices, str(base.trainer.accelerator))
            if chosen is not None:
                base = base.copy()
                OmegaConf.update(base, "trainer.devices", chosen, merge=False)
            try:
                interrupted = work(prep.spec, base, 0).interrupted
            finally:
                if main_thread:
                    signal.signal(signal.SIGTERM, previous)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
                spec_file = write_payload(prep, Path(tmp))
                placements = devices_mod.plan(n_jobs, devices, str(prep.base.trainer.accelerator))
                procs = _spawn(spec_file, placements)
                interrupted = _wait(procs, shutdown_timeout)
                if any(p.returncode == 3 for p in procs):
                    log.error("a worker stopped after too many failed trials (max_failures)")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        study = finish_sweep(prep, interrupted=interrupted, started=started)
    if interrupted:
        log.warning("sweep %s interrupted; run the same command again to resume it",
                    prep.spec.study_name)
        raise KeyboardInterrupt
    check_outcome(study, prep.spec)
    return study


class SweepError(RuntimeError):
    """The sweep stopped short of its target because trials kept failing."""


def check_outcome(study: optuna.Study, spec: SweepSpec) -> None:
    """Raises when workers gave up on failures, so a caller cannot mistake it for success."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    if done >= spec.n_trials:
        return
    errors = [f"trial {t.number}: {t.user_attrs['error']}" for t in trials
              if t.state.name == "FAIL" and "error" in t.user_attrs
              and t.number >= spec.start_number]
    raise SweepError(
        f"study {spec.study_name}: {done}/{spec.n_trials} trials finished; "
        f"{len(errors)} failed with errors (max_failures reached), e.g.\n  "
        + "\n  ".join(errors[:5])
    )


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _sigterm_as_interrupt(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _param_dict(p: space_mod.Param) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    d["choices"] = list(d["choices"])
    d["when"] = {k: list(v) for k, v in d["when"].items()}
    return d


def tune(
    overrides: Sequence[str],
    space: str,
    *,
    study_name: str | None,
    storage: str | None,
    n_trials: int,
    n_jobs: int = 1,
    sampler: str = "tpe",
    pruner: str | Mapping[str, Any] | None = "median",
    seed: int = 0,
    parent_tags: Mapping[str, Any] | None = None,
    **options: Any,
) -> optuna.Study:
    """Tunes the run composed from ``overrides``; see the ``bench.sweep`` module docstring."""
    fixed, extra = space_mod.from_sweep_overrides(list(overrides))
    base = compose(fixed)
    return run_sweep(
        base, space=space, study_name=study_name, storage=storage, n_trials=n_trials,
        n_jobs=n_jobs, sampler=sampler, pruner=pruner, seed=seed, parent_tags=parent_tags,
        extra_params=extra, **options,
    )
