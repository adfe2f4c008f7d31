"""The Hydra Sweeper: turns ``python -m bench -m ...`` into a call of :mod:`bench.sweep`.

Hydra's own sweepers hand batches of jobs to a launcher and wait for the whole batch; an
Optuna sweep wants each worker to ask for its next trial the moment it is free, and wants
the trial's epochs reported while it trains. So the sweeper composes the base config from
the command line once, reads ``hydra.sweeper.*`` once into the frozen
:class:`~bench.sweep.settings.SweepSettings`, and hands both to ``run_sweep``, whose
workers run trials in-process (one worker) or as worker processes (several). With a
non-basic launcher (``hydra/launcher=bench_slurm``) the launcher starts ``n_jobs`` worker
jobs instead, each running the same ask/train/tell loop against the shared storage.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("bench.sweep")


class BenchOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.raw_settings = settings
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
        from bench.sweep.settings import SweepSettings

        # the settings, then the search space against the config, are checked before torch,
        # Lightning and MLflow load (through the driver), so a mistake is refused in seconds
        settings = SweepSettings.from_config(self.raw_settings)
        from bench.sweep import space as space_mod

        fixed, sweeps = space_mod.split_overrides(arguments)
        settings = dataclasses.replace(settings, params={**settings.params, **sweeps})
        base = self._base_config(fixed)
        from bench.config import refuse_written_passwords

        refuse_written_passwords(base, settings.storage)
        space_mod.load(settings.space, settings.params).check(base)
        from bench.sweep.driver import run_sweep

        launcher_target = str(OmegaConf.select(self.config, "hydra.launcher._target_") or "")
        if not launcher_target.endswith("BasicLauncher"):
            return self._sweep_with_launcher(base, fixed, settings)
        try:
            study = run_sweep(base, settings)
        except KeyboardInterrupt:
            from bench import interrupt

            log.warning("sweep stopped by %s; the study is saved: run the same command to "
                        "resume", interrupt.signal_name())
            sys.exit(interrupt.exit_code())
        _log_best(study)
        return study

    def _sweep_with_launcher(self, base: DictConfig, fixed: list[str], settings) -> Any:
        """One launcher job per worker; the study and its MLflow parent are set up here."""
        from bench.sweep.launched import finish_jobs, prepare_jobs, worker_task

        assert self.hydra_context is not None and self.config is not None
        started = time.perf_counter()
        prep, payload = prepare_jobs(base, settings, str(self.config.hydra.sweep.dir))
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=worker_task, config=self.config
        )
        jobs = [[*fixed, f"+sweep_worker={i}", f"+sweep_payload='{payload}'"]
                for i in range(settings.n_jobs)]
        results = self.launcher.launch(jobs, initial_job_idx=0)
        finish_jobs(prep, started, list(results))
        return results


def _log_best(study) -> None:
    try:
        best = study.best_trial
        log.info("best trial %d: value %.6g, params %s", best.number, best.value, best.params)
    except ValueError:
        log.info("no complete trial in study %s", study.study_name)
