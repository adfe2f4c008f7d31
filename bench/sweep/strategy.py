"""Samplers and pruners by name, so a sweep is configured with words rather than code.

Pruners are rebuilt from the same spec in every process that touches a trial (the worker
that asks for it and, if different, the job that reports its epochs), because Optuna keeps
a pruner's settings in the Python object, not in the shared storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from bench.errors import ConfigError

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")


def worker_seed(seed: int, worker: int, n_existing: int) -> int:
    """A distinct, reproducible stream per worker and per resume.

    Every worker seeding its sampler identically would propose the same configurations in
    parallel, and a resumed study reusing the first session's seed would replay its random
    start-up trials; mixing in the worker index and the trials already in the study avoids
    both while keeping a fresh single-worker run bit-for-bit reproducible.
    """
    if worker == 0 and n_existing == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), worker, n_existing]).generate_state(1)[0])


def make_sampler(
    name: str, seed: int, kwargs: Mapping[str, Any] | None = None
) -> optuna.samplers.BaseSampler:
    kw = dict(kwargs or {})
    if name == "tpe":
        # constant_liar: running trials count as bad guesses, so asynchronous workers spread
        # out instead of all sampling near the current best.
        kw.setdefault("constant_liar", True)
        return optuna.samplers.TPESampler(seed=seed, **kw)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **kw)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "sampler: 'cmaes' needs the cmaes package (pip install 'bench[sweep-extra]' "
                "or pip install cmaes)"
            ) from exc
        return optuna.samplers.CmaEsSampler(seed=seed, **kw)
    if name == "qmc":
        kw.setdefault("scramble", True)
        return optuna.samplers.QMCSampler(seed=seed, **kw)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **kw)
    raise ConfigError(f"sampler: {name!r} is not allowed; expected one of {list(SAMPLERS)}")


def pruner_spec(pruner: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalises ``"median"`` or ``{"name": "median", "n_startup_trials": 3}`` to a dict."""
    if pruner is None:
        return {"name": "none"}
    if isinstance(pruner, str):
        return {"name": pruner}
    spec = dict(pruner)
    if "name" not in spec:
        raise ConfigError(f"pruner: {spec!r} needs a 'name', one of {list(PRUNERS)}")
    return spec


def make_pruner(
    pruner: str | Mapping[str, Any] | None, max_epochs: int | None = None
) -> optuna.pruners.BasePruner:
    spec = pruner_spec(pruner)
    name = spec.pop("name")
    if name == "median":
        spec.setdefault("n_startup_trials", 5)
        spec.setdefault("n_warmup_steps", 1)
        return optuna.pruners.MedianPruner(**spec)
    if name == "percentile":
        spec.setdefault("percentile", 25.0)
        spec.setdefault("n_startup_trials", 5)
        spec.setdefault("n_warmup_steps", 1)
        return optuna.pruners.PercentilePruner(**spec)
    if name == "successive_halving":
        spec.setdefault("min_resource", 1)
        spec.setdefault("reduction_factor", 3)
        return optuna.pruners.SuccessiveHalvingPruner(**spec)
    if name == "hyperband":
        spec.setdefault("min_resource", 1)
        # Steps are epochs; telling Hyperband the real maximum sizes its brackets from the
        # start instead of guessing from the first finished trial.
        spec.setdefault("max_resource", max_epochs or "auto")
        spec.setdefault("reduction_factor", 3)
        return optuna.pruners.HyperbandPruner(**spec)
    if name == "threshold":
        return optuna.pruners.ThresholdPruner(**spec)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner: {name!r} is not allowed; expected one of {list(PRUNERS)}")
