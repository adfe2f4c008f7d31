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
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.sweep.runner import (
    Prepared,
    check_outcome,
    finish_sweep,
    prepare_sweep,
    write_payload,
)
from bench.sweep.worker import SweepSpec, work

log = logging.getLogger("bench.sweep")

_PREPARE_KEYS = ("study_name", "storage", "n_trials", "n_jobs", "sampler", "sampler_kwargs",
                 "pruner", "seed", "parent_tags", "heartbeat_interval", "grace_period",
                 "max_retry", "max_failures")


def prepare(base: DictConfig, settings: dict[str, Any], extra: list,
            sweep_dir: str) -> tuple[Prepared, str]:
    s = OmegaConf.to_container(OmegaConf.create(settings), resolve=True)
    prep = prepare_sweep(base, space=s["space"], extra_params=extra,
                         **{k: s[k] for k in _PREPARE_KEYS if k in s})
    return prep, str(write_payload(prep, Path(sweep_dir).resolve()))


def finish(prep: Prepared, started: float, results: list) -> None:
    """After the launcher returned: summary into the parent run, failures surfaced."""
    interrupted = any(getattr(r, "return_value", {}).get("interrupted") for r in results
                      if getattr(r, "status", None) is not None
                      and r.status.name == "COMPLETED")
    study = finish_sweep(prep, interrupted=interrupted, started=started)
    check_outcome(study, prep.spec)


def worker_task(cfg: DictConfig) -> dict[str, Any]:
    """The launched job: one worker loop; ``cfg.sweep_spec`` is the payload file."""
    payload = json.loads(Path(cfg.sweep_spec).read_text())
    spec = SweepSpec(**payload["spec"])
    report = work(spec, OmegaConf.create(payload["cfg"]), int(cfg.sweep_worker))
    return dataclasses.asdict(report)
