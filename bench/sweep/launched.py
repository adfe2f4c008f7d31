"""Sweep workers as Hydra launcher jobs (SLURM through hydra-submitit-launcher).

With ``hydra/launcher=bench_slurm`` the sweeper does not start worker processes itself: it
prepares the study and its MLflow parent on the submitting machine, writes the worker
payload into the sweep directory (on the cluster's shared file system), and asks the
launcher for ``n_jobs`` jobs. Each job is a full worker (ask, train, tell, repeat) against
the shared storage, so nodes stay asynchronous and a preempted job's trial is retried by
the others through heartbeats.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.sweep.driver import PreparedSweep, check_outcome, finish, prepare
from bench.sweep.settings import SweepSettings
from bench.sweep.worker import run_payload, write_payload


def prepare_jobs(base: DictConfig, settings: SweepSettings,
                 sweep_dir: str) -> tuple[PreparedSweep, str]:
    prep = prepare(base, settings)
    return prep, str(write_payload(prep.settings, prep.base, Path(sweep_dir).resolve()))


def finish_jobs(prep: PreparedSweep, started: float, results: list) -> None:
    """After the launcher returned: summary into the parent run, failures surfaced."""
    interrupted = any(getattr(r, "return_value", {}).get("interrupted") for r in results
                      if getattr(r, "status", None) is not None
                      and r.status.name == "COMPLETED")
    study = finish(prep, interrupted=interrupted, started=started)
    check_outcome(study, prep.settings)


def worker_task(cfg: DictConfig) -> dict[str, Any]:
    """The launched job: one worker loop; ``cfg.sweep_payload`` is the payload file."""
    return dataclasses.asdict(run_payload(cfg.sweep_payload, int(cfg.sweep_worker)))
