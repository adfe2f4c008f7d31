"""A sweep's settings, read once and frozen: the one object every part of a sweep receives.

The Hydra sweeper builds it from ``hydra.sweeper.*``, :func:`bench.sweep.tune` from its
keywords; preparing the sweep fills in what only the store can tell (the absolute storage
URL with its password masked, the MLflow parent run, the trials already there) by making a
new copy; worker processes and launcher jobs read the same object back from JSON. Hydra's
schema for ``hydra/sweeper=bench_optuna`` is generated from these fields, so a setting and
its default are written once.

No ``from __future__ import annotations``: Hydra's structured config reads the field types.
"""

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

# Fields filled in by preparation, not by the user: left out of Hydra's schema.
_PREPARED = {"prepared": True}


@dataclass(frozen=True)
class SweepSettings:
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
    pruner: Any = field(default_factory=lambda: {"name": "median"})
    seed: int = 0
    # GPUs: null/auto (one per worker, round-robin), shared, or a list of ids with repeats
    # ([0, 0, 1, 1]: two workers per GPU); see bench/sweep/devices.py.
    devices: Any = None
    heartbeat_interval: int = 10
    grace_period: Any = None  # null -> 3 x heartbeat_interval
    max_retry: int = 2  # retries of a trial whose worker died
    # Worker processes a sweep replaces when they die (OOM killer, SIGKILL, a crash), in all.
    max_restarts: int = 10
    max_failures: Any = None  # stop after this many failed trials (null -> n_trials)
    # Extra tags for the MLflow parent run.
    parent_tags: dict[str, Any] = field(default_factory=dict)
    # Extra dimensions in Hydra sweep syntax, e.g. {"optim.lr": "tag(log,interval(1e-4,1e-1))"};
    # sweep overrides on the command line land here too.
    params: dict[str, str] = field(default_factory=dict)
    # Seconds a worker waits before looking again when the study is full but still running.
    poll_interval: float = 2.0
    # After a tracking error, how long a worker waits for the store to answer again before it
    # takes the next trial (bench/outage.py); 0: do not wait.
    outage_wait: float = 600.0
    parent_run_id: Any = field(default=None, metadata=_PREPARED)
    experiment_id: Any = field(default=None, metadata=_PREPARED)
    tracking_uri: Any = field(default=None, metadata=_PREPARED)
    start_number: int = field(default=0, metadata=_PREPARED)  # trials before this sweep began

    @classmethod
    def from_config(cls, values: Mapping[str, Any], *,
                    where: str = "hydra.sweeper") -> "SweepSettings":
        """From ``hydra.sweeper.*`` (a DictConfig or a dict), checked (:meth:`checked`);
        Hydra's ``_target_`` is dropped."""
        from omegaconf import OmegaConf

        # Hydra hands each setting over as its own node (a DictConfig for mappings)
        plain = cast(dict[str, Any],   # a mapping in, a dict out (the stub says any container)
                     OmegaConf.to_container(OmegaConf.create(dict(values)), resolve=True))
        plain.pop("_target_", None)
        return cls.checked(plain, where=where)

    @classmethod
    def checked(cls, values: Mapping[str, Any], *, where: str = "",
                source: str = "") -> "SweepSettings":
        """Settings a user wrote, refused with a :class:`~bench.errors.ConfigError` that names
        the setting (``where`` is the key path they live under) when a name is unknown or a
        value is not what the sweep needs, before any study or run is opened."""
        from bench import schema

        schema.check(dict(values), settings_schema(), path=where, source=source)
        # null for a mapping of extras means none
        return cls(**{k: v for k, v in values.items()
                      if not (v is None and k in ("sampler_kwargs", "parent_tags", "params"))})

    @property
    def effective_grace_period(self) -> int:
        return int(self.grace_period or 3 * int(self.heartbeat_interval))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SweepSettings":
        return cls(**json.loads(text))


def setting_checks() -> dict[str, Any]:
    """The check of every setting a user may write, by name; a study's ``tuning`` reuses
    those it shares. Built on call so that importing this module stays cheap."""
    from bench import schema as s

    positive_seconds = s.number(above=0)
    return {
        "space": s.text(nonempty=True),
        "study_name": s.optional(s.text(nonempty=True)),
        "storage": s.optional(s.text(nonempty=True)),
        "n_trials": s.integer(minimum=1),
        "n_jobs": s.integer(minimum=1),
        # names and options are checked together, by check_strategy
        "sampler": s.text(nonempty=True),
        "sampler_kwargs": s.optional(s.mapping_of()),
        "pruner": s.either(s.optional(s.text(nonempty=True)), s.mapping_of(),
                           expected="a pruner name or a mapping with 'name' and its options"),
        "seed": s.integer(),
        "devices": _devices,
        "heartbeat_interval": positive_seconds,
        "grace_period": s.optional(positive_seconds),
        "max_retry": s.optional(s.integer(minimum=0)),
        "max_failures": s.optional(s.integer(minimum=1)),
        "parent_tags": s.optional(s.mapping_of()),
        "params": s.optional(s.mapping_of(s.text(nonempty=True))),
        "poll_interval": positive_seconds,
        "outage_wait": s.number(above=-1e-9),
    }


def settings_schema():
    """Every field a user sets may be written, no other; a field without a check of its own
    is held to its declared type, so a new setting is checked from the day it is added."""
    from bench import schema as s

    by_type = {int: s.integer(), float: s.number(), str: s.text(), bool: s.boolean}
    checks = setting_checks()
    fields = {f.name: checks.get(f.name, by_type.get(f.type, s.anything))
              for f in dataclasses.fields(SweepSettings) if not f.metadata.get("prepared")}
    return s.Keys(fields, whole=check_strategy)


def check_strategy(values: Mapping[str, Any]) -> None:
    """The sampler with its options and the pruner with its, as Optuna's classes take them."""
    from bench.sweep.strategy import check_strategy as check

    check(values)


def _devices(value: Any) -> None:
    from bench.schema import Invalid, is_int

    ok = (value is None or value in ("auto", "shared")
          or (is_int(value) and value >= 0)
          or (isinstance(value, str) and all(d.strip().isdigit() for d in value.split(",")))
          or (isinstance(value, list) and value and all(
              (is_int(d) and d >= 0) or (isinstance(d, str) and d.strip().isdigit())
              for d in value)))
    if not ok:
        raise Invalid(f"{value!r} is not allowed", "expected null, 'auto', 'shared', a GPU id "
                      "or a list of GPU ids (repeats allowed, e.g. [0, 0, 1, 1])")


def hydra_schema_fields() -> list[tuple[str, Any, Any]]:
    """``(name, type, field)`` for every user setting, for Hydra's sweeper schema."""
    out = []
    for f in dataclasses.fields(SweepSettings):
        if f.metadata.get("prepared"):
            continue
        default = (field(default_factory=f.default_factory)
                   if f.default_factory is not dataclasses.MISSING else field(default=f.default))
        out.append((f.name, f.type, default))
    return out
