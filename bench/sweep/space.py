"""Search spaces: ``sweeps/<family>.yaml`` turned into Optuna suggestions and config values.

A space belongs to an architecture *family* (recurrent, mlp), not to a dataset or a cell:
every cell and topology of the family is tuned over the same ranges with the same trial
budget, so a difference between architectures cannot come from one of them having been
given a wider or luckier space.

Parameter names are the dotted config keys they set (``optim.lr``), which makes Optuna's
importance plots and MLflow's params speak the same language. A parameter may carry a
``when`` condition on the composed config (``num_layers`` only means something for stacked
topologies); it is then neither sampled nor set elsewhere, so the sampler does not waste
trials on a knob the model ignores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench import schema
from bench.config import SWEEPS_DIR
from bench.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

TYPES = ("float", "int", "categorical")
_MISSING = object()


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)
    # Optuna's categorical choices must be scalars; list-valued choices (MLP widths) travel
    # as their JSON text and are decoded when applied to the config.
    encoded: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            step = None if self.step is None else float(self.step)
            low, high = self._bounds()
            return trial.suggest_float(
                self.name, float(low), float(high), log=self.log, step=step
            )
        if self.type == "int":
            low, high = self._bounds()
            return trial.suggest_int(
                self.name, int(low), int(high), log=self.log, step=int(self.step or 1)
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def _bounds(self) -> tuple[float | int, float | int]:
        if self.low is None or self.high is None:
            raise ConfigError(f"{self.name}: a {self.type} parameter needs both low and high")
        return self.low, self.high

    def active(self, cfg: DictConfig) -> bool:
        for key, allowed in self.when.items():
            value = OmegaConf.select(cfg, key, default=_MISSING)
            if value is _MISSING or value not in allowed:
                return False
        return True

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded else value


@dataclass(frozen=True)
class Space:
    name: str
    family: str
    params: tuple[Param, ...]
    cells: tuple[str, ...] = ()
    source: str = ""

    def check(self, cfg: DictConfig) -> None:
        """Fails before any trial runs when the space cannot apply to this config."""
        cell = OmegaConf.select(cfg, "model.cell", default=None)
        if self.cells and cell not in self.cells:
            raise ConfigError(
                f"space {self.name!r} ({self.source}) is for model.cell in {list(self.cells)}, "
                f"but model.cell is {cell!r}; pick the space of that family (e.g. space=mlp)"
            )
        for p in self.params:
            if p.active(cfg) and OmegaConf.select(cfg, p.name, default=_MISSING) is _MISSING:
                raise ConfigError(
                    f"space {self.name!r} ({self.source}): parameter {p.name!r} is not a key of "
                    "the composed config; use an existing dotted key such as 'optim.lr'"
                )

    def suggest(self, trial: optuna.Trial, cfg: DictConfig) -> dict[str, Any]:
        """Samples every active parameter; returns config values keyed by dotted name."""
        values = {}
        for p in self.params:
            if p.active(cfg):
                values[p.name] = p.decode(p.suggest(trial))
        return values

    def with_overrides(self, extra: list[Param]) -> Space:
        names = {p.name for p in extra}
        kept = tuple(p for p in self.params if p.name not in names)
        return Space(self.name, self.family, kept + tuple(extra), self.cells, self.source)


def apply(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with the trial's values set at their dotted keys."""
    out = cfg.copy()
    for key, value in values.items():
        OmegaConf.update(out, key, value, merge=False, force_add=False)
    return out


def _param(name: str, spec: Any, source: str) -> Param:
    """One parameter of a space file, checked whole before any trial: a malformed range
    otherwise fails inside Optuna in every trial, and the sweep stops on failures."""
    where = f"params.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: {spec!r} is not allowed in {source}; expected a mapping "
                          f"with 'type', one of {list(TYPES)}")
    kind = spec.get("type")
    if kind is None:  # a misspelled "type" reads better as the typo than as a missing type
        known = {"type", "when", "choices", "low", "high", "log", "step"}
        for key in spec:
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown key in {source}; "
                                  f"{schema.suggest(key, sorted(known), where)}")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type: {kind!r} is not allowed in {source}; expected one of "
                          f"{list(TYPES)}")
    schema.check(spec, _param_schema(kind), path=where, source=source)
    when = {k: tuple(v) if isinstance(v, list | tuple) else (v,)
            for k, v in (spec.get("when") or {}).items()}
    if kind == "categorical":
        choices = spec["choices"]
        encoded = any(isinstance(c, list | dict) for c in choices)
        if encoded:
            choices = [json.dumps(c) for c in choices]
        return Param(name, kind, choices=tuple(choices), when=when, encoded=encoded)
    return Param(name, kind, low=spec["low"], high=spec["high"], log=bool(spec.get("log", False)),
                 step=spec.get("step"), when=when)


def _param_schema(kind: str) -> schema.Keys:
    s = schema
    fields: dict[str, Any] = {"type": s.one_of(TYPES), "when": s.optional(_when)}
    if kind == "categorical":
        fields["choices"] = s.list_of(_choice, nonempty=True, distinct=True,
                                      what="a list of choices")
        return s.Keys(fields, whole=_has("choices", "a non-empty list of choices"))
    bound = s.integer() if kind == "int" else s.number()
    fields |= {"low": bound, "high": bound, "log": s.boolean,
               "step": s.optional(s.integer(minimum=1) if kind == "int" else s.number(above=0))}
    return s.Keys(fields, whole=range_check(kind))


def range_check(kind: str):
    """The bounds Optuna accepts for a ``kind`` (float or int) parameter: low below high,
    and with ``log: true`` a positive low (at least 1 for an int) and no step."""
    def check(spec: Mapping[str, Any]) -> None:
        for key in ("low", "high"):
            _has(key, f"{'an integer' if kind == 'int' else 'a number'} ({kind} range)")(spec)
        low, high = spec["low"], spec["high"]
        if not low < high:
            raise schema.Invalid(f"low={low!r} is not below high={high!r}", "expected low < high")
        if spec.get("log"):
            if low <= 0 or (kind == "int" and low < 1):
                raise schema.Invalid(f"{low!r} is not allowed with log: true",
                                     f"expected low {'>= 1' if kind == 'int' else '> 0'}",
                                     key="low")
            if spec.get("step") is not None:
                raise schema.Invalid("step cannot be combined with log: true",
                                     "expected one of them", key="step")
    return check


def _has(key: str, expected: str):
    def check(spec: Mapping[str, Any]) -> None:
        if spec.get(key) is None:
            raise schema.Invalid("missing", f"expected {expected}", key=key)
    return check


def _choice(value: Any) -> None:
    if isinstance(value, Mapping | list) or value is None or isinstance(value, int | float | str):
        return
    raise schema.Invalid(f"{value!r} is not allowed", "expected a number, a string, true/false, "
                         "null, or a list or mapping of them")


def _when(value: Any) -> None:
    """``{dotted.key: value or [values]}``: the parameter is sampled only for those configs."""
    if not isinstance(value, Mapping):
        raise schema.Invalid(f"{value!r} is not allowed",
                             "expected a mapping of config keys to a value or a list of values")
    for k, v in value.items():
        if isinstance(v, Mapping) or (isinstance(v, list | tuple) and not v):
            raise schema.Invalid(f"{v!r} is not allowed",
                                 "expected a value or a non-empty list of values", key=str(k))


def resolve_path(space: str | Path) -> Path:
    """A family name (``recurrent``) is looked up in ``sweeps/``; anything else is a path."""
    p = Path(space)
    if p.suffix in (".yaml", ".yml") or p.is_absolute() or len(p.parts) > 1:
        return p.expanduser().resolve()
    return SWEEPS_DIR / f"{space}.yaml"


def load(space: str | Path, params: Mapping[str, str] | None = None) -> Space:
    """The space file, with ``params`` (``{key: sweep expression}``) added or replacing its
    entries: the form in which a sweep's command-line dimensions travel to its workers."""
    sp = _load_file(space)
    if not params:
        return sp
    fixed, extra = from_sweep_overrides([f"{k}={v}" for k, v in params.items()])
    if fixed:
        raise ConfigError(f"params: {fixed} are not sweep expressions; expected e.g. "
                          "'choice(32,64)' or 'tag(log,interval(1e-4,1e-1))'")
    return sp.with_overrides(extra)


def split_overrides(arguments: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Command-line arguments as fixed overrides and ``{key: sweep expression}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fixed: list[str] = []
    sweeps: dict[str, str] = {}
    for ov in OverridesParser.create().parse_overrides(list(arguments)):
        if ov.is_sweep_override():
            sweeps[ov.get_key_element()] = _as_written(ov).split("=", 1)[1]
        else:
            fixed.append(_as_written(ov))
    return fixed, sweeps


def _as_written(ov: Override) -> str:
    """The argument as the user wrote it (Hydra's parser keeps it on every override)."""
    if ov.input_line is None:
        raise ConfigError(f"{ov.get_key_element()}: Hydra kept no text for this override")
    return ov.input_line


def _load_file(space: str | Path) -> Space:
    path = resolve_path(space)
    if not path.is_file():
        known = sorted(q.stem for q in SWEEPS_DIR.glob("*.yaml") if not q.stem.startswith("study"))
        raise ConfigError(
            f"space: {str(space)!r} not found (looked for {path}); expected one of {known} "
            "or a path to a YAML file"
        )
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'params' mapping")
    schema.check(raw, schema.Keys({
        "family": schema.text(nonempty=True),
        "cells": schema.list_of(schema.text(nonempty=True), what="a list of model.cell values"),
        "params": schema.anything,  # each parameter by its own type, below
    }), source=str(path))
    params = tuple(_param(str(k), v, str(path)) for k, v in raw["params"].items())
    cells = raw.get("cells") or ()
    return Space(path.stem, str(raw.get("family", path.stem)), params, tuple(cells), str(path))


def from_sweep_overrides(arguments: list[str]) -> tuple[list[str], list[Param]]:
    """Splits Hydra command-line arguments into fixed overrides and extra search dimensions.

    ``optim.lr=tag(log,interval(1e-4,1e-1))``, ``model.hidden_size=choice(32,64)`` and
    ``model.num_layers=range(1,4)`` extend or replace the space file's entries, as with
    Hydra's other sweepers, so a one-off experiment needs no new YAML file.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    fixed: list[str] = []
    extra: list[Param] = []
    for ov in OverridesParser.create().parse_overrides(arguments):
        if not ov.is_sweep_override():
            fixed.append(_as_written(ov))
            continue
        name, value = ov.get_key_element(), ov.value()
        log = "log" in getattr(value, "tags", set())
        if isinstance(value, IntervalSweep):
            low, high = value.start, value.end
            is_int = isinstance(low, int) and isinstance(high, int)
            kind = "int" if is_int else "float"
            try:
                range_check(kind)({"low": low, "high": high, "log": log})
            except schema.Invalid as exc:
                raise ConfigError(f"{ov.input_line}: {exc.what}; {exc.expected}") from None
            extra.append(Param(name, kind, low=low, high=high, log=log))
        elif isinstance(value, RangeSweep):
            extra.append(Param(name, "categorical", choices=tuple(ov.sweep_iterator())))
        elif isinstance(value, ChoiceSweep):
            items: list[Any] = value.list
            choices = [c.value() if hasattr(c, "value") and callable(c.value) else c
                       for c in items]
            encoded = any(isinstance(c, list | dict | ListConfig) for c in choices)
            if encoded:
                choices = [json.dumps(OmegaConf.to_container(c) if isinstance(c, ListConfig)
                                      else c) for c in choices]
            extra.append(Param(name, "categorical", choices=tuple(choices), encoded=encoded))
        else:
            raise ConfigError(f"{ov.input_line}: sweep syntax not supported by this sweeper")
    return fixed, extra
