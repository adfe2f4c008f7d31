"""The Hydra Sweeper: turns ``python -m bench -m ...`` into a call of :mod:`bench.sweep`.

Hydra's own sweepers hand batches of jobs to a launcher and wait for the whole batch; an
Optuna sweep wants each worker to ask for its next trial the moment it is free, and wants
the trial's epochs reported while it trains. So the sweeper composes the base config from
the command line once and hands it to ``bench.sweep.run_sweep``, whose workers run trials
in-process (one worker) or as worker processes (several). With a non-basic launcher
(``hydra/launcher=bench_slurm``) the launcher starts ``n_jobs`` worker jobs instead, each
running the same ask/train/tell loop against the shared storage.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("bench.sweep")


class BenchOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.task_function = task_function

    def _base_config(self, overrides: list[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def sweep(self, arguments: list[str]) -> Any:
        from bench.sweep import space as space_mod
        from bench.sweep.runner import run_sweep

        s = OmegaConf.create(self.settings)
        extra_args = [f"{k}={v}" for k, v in (s.get("params") or {}).items()]
        fixed, extra = space_mod.from_sweep_overrides([*arguments, *extra_args])
        base = self._base_config(fixed)
        launcher_target = str(OmegaConf.select(self.config, "hydra.launcher._target_") or "")
        if not launcher_target.endswith("BasicLauncher"):
            return self._sweep_with_launcher(fixed, extra)
        try:
            study = run_sweep(
                base,
                space=s.space, study_name=s.study_name, storage=s.storage,
                n_trials=s.n_trials, n_jobs=s.n_jobs, sampler=s.sampler,
                sampler_kwargs=OmegaConf.to_container(s.sampler_kwargs),
                pruner=OmegaConf.to_container(s.pruner), seed=s.seed,
                parent_tags=OmegaConf.to_container(s.parent_tags), devices=_plain(s.devices),
                heartbeat_interval=s.heartbeat_interval, grace_period=s.grace_period,
                max_retry=s.max_retry, max_failures=s.max_failures, extra_params=extra,
            )
        except KeyboardInterrupt:
            log.warning("sweep interrupted; the study is saved: run the same command to resume")
            sys.exit(130)
        _log_best(study)
        return study

    def _sweep_with_launcher(self, fixed: list[str], extra: list) -> Any:
        """One launcher job per worker; the study and its MLflow parent are set up here."""
        import time

        from bench.sweep.launched import finish, prepare, worker_task

        assert self.hydra_context is not None and self.config is not None
        started = time.perf_counter()
        sweep_dir = str(self.config.hydra.sweep.dir)
        prep, payload = prepare(self._base_config(fixed), self.settings, extra, sweep_dir)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=worker_task, config=self.config
        )
        jobs = [[*fixed, f"+sweep_worker={i}", f"+sweep_spec='{payload}'"]
                for i in range(int(self.settings.get("n_jobs", 1)))]
        results = self.launcher.launch(jobs, initial_job_idx=0)
        finish(prep, started, list(results))
        return results


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _log_best(study) -> None:
    try:
        best = study.best_trial
        log.info("best trial %d: value %.6g, params %s", best.number, best.value, best.params)
    except ValueError:
        log.info("no complete trial in study %s", study.study_name)
