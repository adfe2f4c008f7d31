"""``hydra/sweeper=bench_optuna``: the sweeper's settings, registered in Hydra's ConfigStore.

Kept free of heavy imports: Hydra imports every module under ``hydra_plugins`` at start-up.
No ``from __future__ import annotations`` here: Hydra executes this module without
registering it in ``sys.modules``, where dataclasses would look up string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class BenchOptunaSweeperConf:
    _target_: str = "hydra_plugins.bench_sweeper.sweeper.BenchOptunaSweeper"
    # Search space: a family name in sweeps/ (recurrent, mlp, ...) or a path to a YAML file.
    space: str = "recurrent"
    # null -> "<dataset>-<arch>-<space>"; the same name + storage resumes / shares a study.
    study_name: Any = None
    # null -> sqlite file optuna.db in the launch directory; postgresql://user@host/db for
    # many workers (password via BENCH_STORAGE_PASSWORD, PGPASSWORD or ~/.pgpass).
    storage: Any = None
    # Target number of COMPLETE + PRUNED trials in the study (resuming tops up).
    n_trials: int = 20
    # Asynchronous worker processes (or launcher jobs with a non-basic hydra/launcher).
    n_jobs: int = 1
    sampler: str = "tpe"  # tpe | random | cmaes | qmc | gp
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    # median | percentile | successive_halving | hyperband | threshold | none, with options.
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    seed: int = 0
    # GPUs: null/auto (one per worker, round-robin), shared, or a list of ids with repeats
    # ([0, 0, 1, 1]: two workers per GPU); see bench/sweep/devices.py.
    devices: Any = None
    heartbeat_interval: int = 10
    grace_period: Any = None  # null -> 3 x heartbeat_interval
    max_retry: int = 2  # retries of a trial whose worker died
    max_failures: Any = None  # stop after this many failed trials (null -> n_trials)
    # Extra tags for the MLflow parent run.
    parent_tags: dict[str, Any] = field(default_factory=dict)
    # Extra dimensions in Hydra sweep syntax, e.g. {"optim.lr": "tag(log,interval(1e-4,1e-1))"}.
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="bench_optuna", node=BenchOptunaSweeperConf, provider="bench"
)
