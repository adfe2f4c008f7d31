"""A study definition: what it may hold (its schema and defaults), read and checked before any
work, so a misspelled key or a bad value stops the study where it was written."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from bench import schema
from bench.errors import ConfigError, StudyError
from bench.stores import STORAGE_ENV, TRACKING_ENV, mask, password_refusal
from bench.study.plan import Study
from bench.vocab import (
    CELLS,
    RECURRENT_CELLS,
    STUDY_TOPOLOGIES,
    TOPOLOGIES,
)

DEFAULTS: dict[str, Any] = {
    "name": None,
    "description": "",
    "seeds": 5,
    "tracking_uri": None,
    "overrides": [],
    "match_params": None,
    # auto: a cell's seeds still to run train together as one grouped model
    # (bench.replica_train), each recorded as its own run; off: one bench.train.run per seed
    "replicas": "auto",
    "tuning": {
        "n_trials": 20, "n_jobs": 1, "sampler": "tpe", "pruner": "median", "seed": 0,
        "storage": None, "sampler_kwargs": None,
        # auto: a trial on a training set under folds.max_cases (500) cases is scored by the
        # mean over 5 folds of all training cases, and the final models train on all of them
        # for the tuned epochs (bench.fold_train); off: the validation hold-out; or a count
        "folds": "auto",
        # after a tracking error, seconds to wait for the store before the next trial or run
        "outage_wait": 600.0,
    },
    "architectures": {
        "cells": list(RECURRENT_CELLS),
        "topologies": list(STUDY_TOPOLOGIES),
        "space": "recurrent",
        "budget_space": "recurrent_budget",
        "overrides": [],
    },
    "baselines": {
        "mlp": {"tune": True, "space": "mlp", "overrides": []},
        "naive": {"tune": False, "overrides": []},
    },
    "datasets": {},
}



def load(path: str | Path, dotlist: Sequence[str] = ()) -> Study:
    """Reads a study definition, applies ``key=value`` overrides and checks it.

    The file and each override are checked on their own first, so that a misspelled key or a
    bad value is reported where it was written; the merged definition is then checked as a
    whole (a sampler's options against that sampler, the search spaces it names), before
    anything is opened or run.
    """
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"study definition {p}: file not found (see sweeps/study_*.yaml)")
    layers = [(str(path), _read(p))] + [(f"the override '{mask(o)}'", _override(o)) for o in dotlist]
    plain = [(source, OmegaConf.to_container(layer)) for source, layer in layers]
    for source, values in plain:
        schema.check(values, _schema(), source=source, partial=True, error=StudyError)
    d = OmegaConf.create(DEFAULTS)
    for _, layer in layers:
        d = cast(DictConfig, OmegaConf.merge(d, layer))   # mappings merged: a mapping
        if "baselines" in layer and not layer.baselines:
            d.baselines = {}  # an explicit {} or null switches the default baselines off
    if not d.name:
        d.name = p.stem.removeprefix("study_")

    def written_in(key_path: str) -> str:
        """The last source that set the key, where a fault in the merged value came from."""
        for source, values in reversed(plain):
            node = values
            for key in key_path.split("."):
                node = node.get(key, _UNSET) if isinstance(node, dict) else _UNSET
            if node is not _UNSET:
                return source
        return str(path)

    try:
        merged = OmegaConf.to_container(d, resolve=True)
    except Exception as exc:  # an interpolation that does not resolve
        raise StudyError(f"{path}: {exc}") from None
    schema.check(merged, _schema(), source=written_in, error=StudyError)
    return Study(d, str(path))


_UNSET = object()


def _read(p: Path) -> DictConfig:
    try:
        layer = OmegaConf.load(p)
    except Exception as exc:  # YAML syntax
        raise StudyError(f"{p}: not a readable YAML file ({exc})") from None
    if not isinstance(layer, DictConfig):
        raise StudyError(f"{p}: expected a mapping of study settings (name, seeds, tuning, "
                         "datasets, ...), got a list or a scalar")
    return layer


def _override(text: str) -> DictConfig:
    if "=" not in text:
        raise StudyError(f"the override {mask(text)!r}: expected key=value, e.g. seeds=3")
    try:
        return OmegaConf.from_dotlist([text])
    except Exception as exc:
        raise StudyError(f"the override {mask(text)!r}: expected key=value, e.g. seeds=3 ({exc})") \
            from None


def _schema() -> schema.Keys:
    """What a study definition may hold: :data:`DEFAULTS`'s keys, plus the per-dataset keys
    :meth:`Study.cells` and the report read. ``tuning`` shares its checks with a sweep's
    settings, since it becomes them."""
    from bench.sweep.settings import check_strategy, setting_checks

    s = schema
    overrides = s.list_of(s.text(), what="a list of key=value overrides")
    sweep = setting_checks()
    tuning = s.Keys({
        **{k: sweep[k] for k in ("n_jobs", "sampler", "sampler_kwargs", "pruner", "seed",
                                 "outage_wait")},
        "storage": s.optional(_url_without_password(STORAGE_ENV)),
        "n_trials": s.integer(minimum=0),  # 0: the configurations as given, untuned
        "folds": _folds,
    }, whole=check_strategy)
    arch = {
        "cells": s.list_of(s.one_of(RECURRENT_CELLS), nonempty=True),
        "topologies": s.list_of(s.one_of(TOPOLOGIES), nonempty=True),
        "space": s.text(nonempty=True),
        "budget_space": s.text(nonempty=True),
        "overrides": overrides,
    }
    baseline = s.Keys({"tune": s.boolean, "space": s.optional(s.text(nonempty=True)),
                       "overrides": overrides}, nullable=True, whole=_baseline_space)
    seeds = s.either(s.integer(minimum=1),
                     s.list_of(s.integer(minimum=0), nonempty=True, distinct=True),
                     expected="a positive count or a non-empty list of distinct seeds")
    dataset = s.Keys({
        "overrides": overrides,
        "seeds": seeds,
        "enabled": s.boolean,
        "needs": s.text(),
        "tuning_seeds": s.list_of(s.integer(), nonempty=True, distinct=True,
                                  what="a list of integer sampler seeds, e.g. [0, 1]"),
        "architectures": s.Keys(arch, nullable=True),
        "baselines": s.optional(s.list_of(s.text(), what="a list of baseline names")),
        "verdict": s.boolean,  # false: a side experiment, left out of the report's verdict
        "replicas": _replicas,
    })
    return s.Keys({
        "name": s.optional(_name),
        "description": s.optional(s.text()),
        "seeds": seeds,
        "tracking_uri": s.optional(_url_without_password(TRACKING_ENV)),
        "overrides": overrides,
        "match_params": s.either(s.optional(s.boolean), s.integer(minimum=1),
                                 expected="null, true (tune a parameter budget) or a positive "
                                 "integer (one budget for all)"),
        "replicas": _replicas,
        "tuning": tuning,
        "architectures": s.Keys(arch),
        "baselines": s.Each(baseline, nullable=True, names=CELLS),
        "datasets": s.Each(dataset),
    }, whole=_whole)


def _name(value) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        raise schema.Invalid(f"{value!r} is not allowed", "expected letters, digits, '-' or '_'")


def _replicas(value) -> None:
    # YAML reads a bare ``off`` (and ``on``) as a boolean, so those count as written
    if not (isinstance(value, bool) or value in ("auto", "off")):
        raise schema.Invalid(f"{value!r} is not allowed",
                             "expected auto (seeds trained together as replicas where the "
                             "model allows) or off (one run per seed)")


def _folds(value) -> None:
    from bench.config import check_fold_setting

    try:
        check_fold_setting("tuning.folds", value)
    except ConfigError:
        raise schema.Invalid(f"{value!r} is not allowed",
                             "expected auto (5 folds of the training cases where they are "
                             "fewer than 500), off (the validation hold-out) or a number of "
                             "folds >= 2") from None


def _baseline_space(spec: dict) -> None:
    if spec.get("tune", False) and not spec.get("space"):
        raise schema.Invalid("tune: true needs a search space", "expected e.g. space: mlp",
                             key="space")


def _url_without_password(variable: str) -> schema.Check:
    """A store URL with no password in it: a definition is committed and shared, and an
    override of it is saved with the study's session; the password goes by ``variable``."""
    def check_(value: Any) -> None:
        schema.text(nonempty=True)(value)
        if password_refusal("", value, variable) is not None:
            raise schema.Invalid("a password in the URL is not allowed",
                                 f"the URL naming only the user, the password in ${variable} "
                                 "(see docs/sweeps.md, 'Passwords')")
    return check_


def _whole(d: dict) -> None:
    """What only the merged definition can tell: a dataset to run, the baselines a dataset
    names, and the search spaces the tuned cells will use."""
    if not d.get("datasets"):
        raise schema.Invalid("empty", "a study needs at least one dataset with its overrides",
                             key="datasets")
    known = list(dict.fromkeys([*DEFAULTS["baselines"], *(d.get("baselines") or {})]))
    for k, v in d["datasets"].items():
        for b in v.get("baselines") or []:
            if b not in known:
                raise schema.Invalid(f"unknown baseline {b!r}", schema.suggest(b, known),
                                     key=f"datasets.{k}.baselines")
    from bench.sweep import space as space_mod

    for key, name in _spaces(d).items():
        try:
            space_mod.load(name)
        except ConfigError as exc:
            raise schema.Invalid(f"{name!r} cannot be used", str(exc), key=key) from None


def _spaces(d: dict) -> dict[str, str]:
    """The search spaces the tuned cells will load, by the key that names each."""
    if not d["tuning"]["n_trials"]:
        return {}
    key = "space" if d.get("match_params") in (None, False) else "budget_space"
    out = {f"architectures.{key}": d["architectures"][key]}
    for k, v in d["datasets"].items():
        if v.get("enabled", True) and (v.get("architectures") or {}).get(key):
            out[f"datasets.{k}.architectures.{key}"] = v["architectures"][key]
    for b, spec in (d.get("baselines") or {}).items():
        if spec and spec.get("tune", False):
            out[f"baselines.{b}.space"] = spec["space"]
    return out
