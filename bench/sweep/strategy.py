"""Samplers and pruners by name, so a sweep is configured with words rather than code.

Pruners are rebuilt from the same spec in every process that touches a trial (the worker
that asks for it and, if different, the job that reports its epochs), because Optuna keeps
a pruner's settings in the Python object, not in the shared storage.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from bench.errors import ConfigError
from bench.schema import Invalid

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")


def worker_seed(seed: int, incarnation: int) -> int:
    """The sampler seed of a study's ``incarnation``-th worker process (0, 1, 2, ... in the
    order they opened the study; :func:`bench.sweep.storage.claim_incarnation`).

    Every worker seeding its sampler identically would propose the same configurations: two
    workers in parallel, a replacement for a killed worker (it is handed its predecessor's
    index and payload), a second sweep process on a shared study, a resumed study replaying the
    first session's random start-up trials. The incarnation is counted in the study's storage,
    so each of them draws its own stream, while the first worker of a fresh study keeps the
    plain seed and a single-worker run stays bit-for-bit reproducible.
    """
    if incarnation == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), incarnation]).generate_state(1)[0])


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


# ---------------------------------------------------------------------------------------------
# Checking a sampler and a pruner before the sweep starts
# ---------------------------------------------------------------------------------------------

SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
}
PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}
# Options set through a setting of their own rather than through the option mapping.
_SET_ELSEWHERE = ("seed",)
_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int, "float": (int, float), "str": str, "bool": bool, "None": type(None)}


def options(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword options an Optuna class takes, read from its signature: a list kept by
    hand would refuse what a newer Optuna adds and pass what it dropped."""
    return {n: p for n, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _type_ok(param: inspect.Parameter, value: Any) -> bool:
    """Whether ``value`` fits an annotation made of plain types (``int``, ``str | int``,
    ``float | None``); anything richer (a callable, a sampler) is left to Optuna."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return True
    parts = [t.strip() for t in (ann if isinstance(ann, str)
                                 else inspect.formatannotation(ann)).split("|")]
    if not all(t in _PLAIN_TYPES for t in parts):
        return True
    if isinstance(value, bool):
        return "bool" in parts
    return any(isinstance(value, _PLAIN_TYPES[t]) for t in parts)


def _check_options(cls: type, given: Mapping[str, Any], label: str, key: str) -> None:
    allowed = {n: p for n, p in options(cls).items() if n not in _SET_ELSEWHERE}
    for name, value in given.items():
        if name in _SET_ELSEWHERE and name in options(cls):
            raise Invalid(f"option {name!r} of {label} is set by the '{name}' setting",
                          "leave it out here", key=key)
        if name not in allowed:
            raise Invalid(f"unknown option {name!r} for {label}",
                          f"expected one of {sorted(allowed)}" if allowed
                          else f"{label} takes no options", key=key)
        if not _type_ok(allowed[name], value):
            ann = allowed[name].annotation
            ann = ann if isinstance(ann, str) else inspect.formatannotation(ann)
            raise Invalid(f"option {name}={value!r} of {label} is not allowed",
                          f"expected {ann}", key=key)


def check_strategy(values: Mapping[str, Any]) -> None:
    """Refuses a sampler or pruner that Optuna would refuse later, from the ``sampler``,
    ``sampler_kwargs`` and ``pruner`` entries of a sweep's settings or a study's tuning.

    Names and option names are checked first, for a message that lists the valid ones;
    then the objects are built once, so that a value Optuna rejects (``reduction_factor:
    1``) is refused now, not in the first trial of every worker.
    """
    import warnings

    sampler = values.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise Invalid(f"{sampler!r} is not allowed", f"expected one of {list(SAMPLERS)}",
                      key="sampler")
    kwargs = values.get("sampler_kwargs") or {}
    _check_options(SAMPLER_CLASSES[sampler], kwargs, sampler, "sampler_kwargs")
    spec = checked_pruner(values.get("pruner", "median"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's "experimental" notices, not faults
        try:
            make_sampler(sampler, 0, kwargs)
        except ConfigError as exc:  # an optional package missing
            raise Invalid(str(exc).removeprefix("sampler: "), key="sampler") from None
        except (TypeError, ValueError) as exc:
            raise Invalid(f"{sampler} refuses these options ({exc})", key="sampler_kwargs") \
                from None
        try:
            make_pruner(spec)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"{spec['name']} refuses these options ({exc})", key="pruner") \
                from None


def checked_pruner(pruner: Any) -> dict[str, Any]:
    """:func:`pruner_spec`, refusing an unknown pruner or option with a message that lists
    the valid ones."""
    if pruner is not None and not isinstance(pruner, str | Mapping):
        raise Invalid(f"{pruner!r} is not allowed", f"expected a pruner name, one of "
                      f"{list(PRUNERS)}, or a mapping with 'name' and its options", key="pruner")
    if isinstance(pruner, Mapping) and "name" not in pruner:
        raise Invalid(f"{dict(pruner)!r} has no 'name'", f"expected 'name', one of "
                      f"{list(PRUNERS)}, beside the pruner's options", key="pruner")
    spec = pruner_spec(pruner)
    name = spec["name"]
    if name not in PRUNERS:
        raise Invalid(f"{name!r} is not allowed", f"expected one of {list(PRUNERS)}",
                      key="pruner")
    if name == "none":
        # Switching pruning off keeps the options of the pruner it replaces
        # (hydra.sweeper.pruner.name=none on the default median mapping); they do nothing.
        return spec
    _check_options(PRUNER_CLASSES[name], {k: v for k, v in spec.items() if k != "name"},
                   name, "pruner")
    return spec
