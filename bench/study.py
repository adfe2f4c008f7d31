"""``python -m bench.study sweeps/study_<name>.yaml``: the whole comparison protocol, resumable.

For every dataset x architecture of a study definition it (1) tunes on the validation split with
the same trial budget for every architecture, (2) retrains the best configuration under each of
the study's seeds and tests it once, and (3) runs the naive and MLP baselines under the same
seeds. All of it goes to MLflow with the tags the report reads (:data:`TAGS`), so the report is
a pure function of the MLflow store.

A dataset's ``tuning_seeds: [0, 1]`` repeats its tuning with more than one sampler seed (each
repeat is its own Optuna study, ``<study>.<dataset>.<arch>.t<seed>``, and its retrains carry a
``tuning_seed`` tag), so the report can say how much of the spread comes from tuning.

The definition is merged onto :data:`DEFAULTS`, then the ``key=value`` overrides of the command
line onto it. ``baselines: {}`` or ``baselines: null`` (``baselines={}`` on the command line)
means no baselines at all, where a merge would otherwise keep the default ones;
``baselines.mlp=null`` drops one. Every key and value is checked before any work (the keys of
:data:`DEFAULTS`, and per dataset ``overrides``, ``enabled``, ``needs``, ``seeds``,
``tuning_seeds``, ``architectures``, ``baselines`` and ``verdict``): a misspelled key or a bad
value stops the study with a message naming the key, the file or override that wrote it and
what was expected, because a silently ignored budget would run the default one and give a wrong
result.

Resuming is by construction rather than by bookkeeping: a tuning cell is skipped when its Optuna
study already holds the budgeted number of finished trials, and a final run is skipped when
MLflow holds a FINISHED run with the same study, phase, dataset, architecture and seed tags. A
crash or Ctrl-C therefore loses at most the runs that were in flight. On a machine without the
stores (a fresh clone, another node), the committed tidy record ``reports/<study>/record/``
stands in for them (:mod:`bench.resume`): its final runs count as done and its tuning trials
rebuild a missing Optuna study, so a study can run over several sittings and machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench import schema, tracking
from bench.config import compose
from bench.errors import ConfigError, StudyError
from bench.report.record import locate
from bench.resume import Committed
from bench.stores import StoreAddress, mask
from bench.tracking import TAGS
from bench.vocab import (
    CELLS,
    FINISHED_TRIAL_STATES,
    RECURRENT_CELLS,
    STUDY_TOPOLOGIES,
    TOPOLOGIES,
    count_finished,
)

log = logging.getLogger("bench.study")

SESSION_EXPERIMENT = "bench-studies"


DEFAULTS = {
    "name": None,
    "description": "",
    "seeds": 5,
    "tracking_uri": None,
    "overrides": [],
    "match_params": None,
    "tuning": {
        "n_trials": 20, "n_jobs": 1, "sampler": "tpe", "pruner": "median", "seed": 0,
        "storage": None, "sampler_kwargs": None,
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


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    study: str
    dataset: str
    arch: str
    phase: str          # final (contenders) | baseline
    overrides: tuple[str, ...]
    space: str | None   # None: not tuned (the naive baseline)
    tuning_seed: int = 0
    repeat: bool = False  # a repeat of the tuning with another sampler seed

    @property
    def optuna_study(self) -> str:
        base = f"{self.study}.{self.dataset}.{self.arch}"
        return f"{base}.t{self.tuning_seed}" if self.repeat else base


def _seed_list(value) -> list[int]:
    """``seeds: 5`` is seeds 0-4; a list names them."""
    return list(range(int(value))) if isinstance(value, int) else [int(x) for x in value]


@dataclass
class Study:
    definition: DictConfig
    path: str = ""
    # A share of the datasets for this process (``--datasets``): several study processes on
    # disjoint shares keep every core busy through the retrains, which run one at a time. The
    # share runs in the order given, so a sitting of limited length can finish the quick
    # datasets before it starts the slow ones.
    only: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return str(self.definition.name)

    @property
    def seeds(self) -> list[int]:
        return _seed_list(self.definition.seeds)

    def seeds_of(self, dataset: str) -> list[int]:
        """The dataset's final-run seeds: its own ``seeds`` (more where runs take seconds, so
        its tests have more power at little cost), else the study's."""
        own = self.definition.datasets[dataset].get("seeds")
        return self.seeds if own is None else _seed_list(own)

    @cached_property
    def storage(self) -> StoreAddress:
        """The Optuna storage, by the rules of a sweep's (the study's sweeps are handed it),
        so that the study's own reads open what its sweeps open."""
        return StoreAddress.optuna(self.definition.tuning.storage)

    @cached_property
    def tracking_store(self) -> StoreAddress:
        return StoreAddress.tracking(self.definition.tracking_uri)

    def enabled_datasets(self) -> list[str]:
        """In the definition's order, or in the share's when one is given."""
        order = self.definition.datasets if self.only is None else self.only
        return [k for k in order if self.definition.datasets[k].get("enabled", True)]

    def tuning_seeds(self, dataset: str) -> list[int]:
        """Sampler seeds the dataset is tuned with: the definition's ``tuning.seed`` first, then
        any other seed of the dataset's ``tuning_seeds`` (a repeated tuning measures how much
        of the spread comes from the tuning rather than the training seed)."""
        primary = int(self.definition.tuning.seed)
        extra = self.definition.datasets[dataset].get("tuning_seeds") or []
        return [primary] + sorted({int(s) for s in extra} - {primary})

    def skipped_datasets(self) -> dict[str, str]:
        return {
            k: str(v.get("needs", "disabled in the study definition"))
            for k, v in self.definition.datasets.items() if not v.get("enabled", True)
        }

    def cells(self) -> list[Cell]:
        """Every dataset x architecture cell with the overrides that define it.

        ``match_params`` decides how model size is compared: false tunes the width in the
        family's space; true tunes a parameter budget instead (``budget_space``: every trial
        of every architecture draws from the same budgets, so the comparison is at equal
        capacity); an integer pins that budget for every recurrent model and the MLP.
        """
        d = self.definition
        common = [str(o) for o in d.overrides]
        common += [f"study={self.name}", f"tracking.uri={_quote(str(self.tracking_store))}"]
        budget = d.match_params
        fixed_budget = None if isinstance(budget, bool) or budget is None else int(budget)
        tuned = int(d.tuning.n_trials) > 0   # 0: compare the configurations as given, untuned
        out: list[Cell] = []
        for ds in self.enabled_datasets():
            spec_ds = d.datasets[ds]
            ds_over = [str(o) for o in spec_ds.get("overrides", [])]
            # A dataset may narrow the architecture set (a side experiment for one claim).
            archs = OmegaConf.merge(d.architectures, spec_ds.get("architectures") or {})
            budget_on = budget is not None and budget is not False
            space = str(archs.budget_space if budget_on else archs.space)
            baselines = spec_ds.get("baselines")
            for cell in archs.cells:
                for topo in archs.topologies:
                    over = [f"model={cell}", f"model.topology={topo}", *map(str, archs.overrides)]
                    if fixed_budget is not None:
                        over.append(f"model.param_budget=choice({fixed_budget})" if tuned
                                    else f"model.param_budget={fixed_budget}")
                    out += self._repeats(Cell(self.name, ds, f"{cell}-{topo}", "final",
                                              tuple(common + ds_over + over),
                                              space if tuned else None))
            for base, spec in d.baselines.items():
                if spec is None or (baselines is not None and base not in baselines):
                    continue
                over = [f"model={base}", *map(str, spec.get("overrides", []))]
                if fixed_budget is not None and base == "mlp":
                    over.append(f"model.param_budget={fixed_budget}")
                sp = str(spec.space) if tuned and spec.get("tune", False) else None
                out += self._repeats(Cell(self.name, ds, str(base), "baseline",
                                          tuple(common + ds_over + over), sp))
        return out

    def _repeats(self, cell: Cell) -> list[Cell]:
        """The cell under its primary sampler seed and, when tuned, under each extra one."""
        seeds = self.tuning_seeds(cell.dataset)
        first = replace(cell, tuning_seed=seeds[0])
        if cell.space is None:
            return [first]
        return [first] + [replace(cell, tuning_seed=s, repeat=True) for s in seeds[1:]]


def _quote(value: str) -> str:
    """Quotes a value for a Hydra override when its grammar would otherwise split it."""
    if re.fullmatch(r"[\w./:\-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    layers = [(str(path), _read(p))] + [(f"the override '{o}'", _override(o)) for o in dotlist]
    plain = [(source, OmegaConf.to_container(layer)) for source, layer in layers]
    for source, values in plain:
        schema.check(values, _schema(), source=source, partial=True, error=StudyError)
    d = OmegaConf.create(DEFAULTS)
    for _, layer in layers:
        d = OmegaConf.merge(d, layer)
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
        raise StudyError(f"the override {text!r}: expected key=value, e.g. seeds=3")
    try:
        return OmegaConf.from_dotlist([text])
    except Exception as exc:
        raise StudyError(f"the override {text!r}: expected key=value, e.g. seeds=3 ({exc})") \
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
                                 "storage")},
        "n_trials": s.integer(minimum=0),  # 0: the configurations as given, untuned
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
    })
    return s.Keys({
        "name": s.optional(_name),
        "description": s.optional(s.text()),
        "seeds": seeds,
        "tracking_uri": s.optional(s.text(nonempty=True)),
        "overrides": overrides,
        "match_params": s.either(s.optional(s.boolean), s.integer(minimum=1),
                                 expected="null, true (tune a parameter budget) or a positive "
                                 "integer (one budget for all)"),
        "tuning": tuning,
        "architectures": s.Keys(arch),
        "baselines": s.Each(baseline, nullable=True, names=CELLS),
        "datasets": s.Each(dataset),
    }, whole=_whole)


def _name(value) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        raise schema.Invalid(f"{value!r} is not allowed", "expected letters, digits, '-' or '_'")


def _baseline_space(spec: dict) -> None:
    if spec.get("tune", False) and not spec.get("space"):
        raise schema.Invalid("tune: true needs a search space", "expected e.g. space: mlp",
                             key="space")


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


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def best_values(optuna_study, space: str) -> dict:
    """The best trial's values keyed by config key, decoded as the sweeper applied them
    (list-valued choices travel through Optuna as JSON text)."""
    from bench.sweep import space as space_mod

    params = dict(optuna_study.best_trial.params)
    try:
        decoders = {p.name: p for p in space_mod.load(space).params}
    except Exception:  # a space file renamed since tuning: values are used as stored
        decoders = {}
    out = {}
    for k, v in sorted(params.items()):
        p = decoders.get(k)
        if p is not None:
            out[k] = p.decode(v)
        elif isinstance(v, str) and v[:1] in "[{":
            out[k] = json.loads(v)
        else:
            out[k] = v
    return out


def final_config(cell: Cell, seed: int, values: dict | None = None) -> DictConfig:
    """The cell's config under one seed, with the tuned values applied as a trial had them."""
    from bench.sweep import space as space_mod

    fixed, _ = space_mod.split_overrides(cell.overrides)
    cfg = compose([*fixed, f"seed={seed}"])
    if values:
        cfg = space_mod.apply(cfg, values)
    return cfg


class Runner:
    """Executes a study's plan; each step first asks the stores whether it is already done."""

    def __init__(self, study: Study, *, dry_run: bool = False, echo=print,
                 committed: Committed | None = None):
        self.study = study
        self.dry_run = dry_run
        self.echo = echo
        self.store = study.tracking_store
        self.client = tracking.client_for(self.store)
        self.committed = committed

    # -- stores -------------------------------------------------------------------------------

    def finished_runs(self, cell: Cell) -> dict[int, str]:
        """seed -> run id of the FINISHED, unpruned final runs of one cell."""
        s = self.study
        filt = (
            f"tags.{TAGS['study']} = '{s.name}' and tags.{TAGS['phase']} = '{cell.phase}' and "
            f"tags.{TAGS['study_dataset']} = '{cell.dataset}' and tags.{TAGS['arch']} = '{cell.arch}' "
            "and attributes.status = 'FINISHED'"
        )
        exps = [e.experiment_id for e in self.client.search_experiments()]
        out: dict[int, str] = {}
        if not exps:
            return out
        for r in self.client.search_runs(exps, filter_string=filt, max_results=5000):
            if r.data.tags.get("pruned") == "true":
                continue
            if cell.space is not None and r.data.tags.get(
                    TAGS["tuning_seed"], str(self.study.tuning_seeds(cell.dataset)[0])
            ) != str(cell.tuning_seed):
                continue   # a retrain of another tuning run (untagged: the primary seed's)
            try:
                out.setdefault(int(r.data.tags.get(TAGS["seed"], "")), r.info.run_id)
            except ValueError:
                continue
        if self.committed is not None:
            for seed in self.committed.finished_seeds(
                    phase=cell.phase, dataset=cell.dataset, arch=cell.arch,
                    tuning_seed=cell.tuning_seed if cell.space is not None else None):
                out.setdefault(seed, "record")
        return out

    def finished_trials(self, cell: Cell) -> int:
        import optuna

        path = self.study.storage.sqlite_file
        if path is not None and not path.exists():
            return 0   # do not create the file just to look (a dry run must leave no trace)
        try:
            st = optuna.load_study(study_name=cell.optuna_study, storage=self.study.storage.connect())
        except KeyError:
            return 0
        return count_finished(t.state for t in st.get_trials(deepcopy=False))

    # -- steps --------------------------------------------------------------------------------

    def tune_cell(self, cell: Cell):
        import optuna

        t = self.study.definition.tuning
        n_trials = int(t.n_trials)
        if self.committed is not None and not self.dry_run:
            direction = str(final_config(cell, self.study.seeds[0]).dataset.direction)
            self.committed.restore_study(cell.optuna_study, self.study.storage.connect(), direction)
        done = self.finished_trials(cell)
        if done >= n_trials:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: done ({done}/{n_trials} trials)")
        elif self.dry_run and self._recorded_trials(cell):
            self.echo(f"  tune {cell.dataset}/{cell.arch}: {self._recorded_trials(cell)} trials "
                      f"in {self.committed.path}; would restore them and run the rest")
            return None
        elif self.dry_run:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: would run {n_trials - done} trials")
            return None
        else:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: {done}/{n_trials} trials done, running")
            from bench.sweep import tune

            tune(
                list(cell.overrides), cell.space,
                study_name=cell.optuna_study, storage=str(self.study.storage), n_trials=n_trials,
                n_jobs=int(t.n_jobs), sampler=str(t.sampler),
                # a pruner is a name or {name: ..., its options}; the sampler may take options
                # too (e.g. TPE's n_startup_trials), as in a sweep's settings
                pruner=(OmegaConf.to_container(t.pruner) if OmegaConf.is_config(t.pruner)
                        else str(t.pruner)),
                sampler_kwargs=(OmegaConf.to_container(t.sampler_kwargs)
                                if t.get("sampler_kwargs") else None),
                seed=cell.tuning_seed, parent_tags=self._tags(cell, "tune"),
            )
        st = optuna.load_study(study_name=cell.optuna_study, storage=self.study.storage.connect())
        if not any(tr.state.name == "COMPLETE" for tr in st.get_trials(deepcopy=False)):
            raise StudyError(
                f"{cell.optuna_study}: no trial completed (all pruned or failed); nothing to "
                "retrain. Check the failed trials in MLflow, or raise tuning.n_trials."
            )
        return st

    def _recorded_trials(self, cell: Cell) -> int:
        if self.committed is None:
            return 0
        t = self.committed.trials(cell.optuna_study)
        return int(t["status"].isin(FINISHED_TRIAL_STATES).sum())

    def finals(self, cell: Cell, tuned=None) -> int:
        done = self.finished_runs(cell)
        todo = [s for s in self.study.seeds_of(cell.dataset) if s not in done]
        label = f"{cell.dataset}/{cell.arch}" + (f" (tuning seed {cell.tuning_seed})"
                                                 if cell.repeat else "")
        self.echo(f"  {cell.phase} {label}: seeds done {sorted(done)}, to run {todo}")
        if self.dry_run or not todo:
            return 0
        from bench import interrupt
        from bench.train import run

        values = best_values(tuned, cell.space) if tuned is not None else None
        tags = self._tags(cell, cell.phase)
        if tuned is not None:
            tags[TAGS["best_trial"]] = str(tuned.best_trial.number)
        failures = 0
        for seed in todo:
            interrupt.check()
            cfg = final_config(cell, seed, values)
            try:
                run(cfg, tags=tags, callbacks=[interrupt.SafePointInterrupt()])
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failed seed must not stop the study; resume retries it
                failures += 1
                self.echo(f"    seed {seed} failed: {type(exc).__name__}: {exc}")
        return failures

    def _tags(self, cell: Cell, phase: str) -> dict[str, str]:
        tags = {
            TAGS["study"]: self.study.name,
            TAGS["phase"]: phase,
            TAGS["study_dataset"]: cell.dataset,
            TAGS["arch"]: cell.arch,
        }
        if cell.space is not None:
            tags[TAGS["tuning_seed"]] = str(cell.tuning_seed)
            tags[TAGS["optuna_study"]] = cell.optuna_study
            tags[TAGS["optuna_storage"]] = str(self.study.storage)
        return tags

    # -- session ------------------------------------------------------------------------------

    def _open_session(self, command: str) -> str:
        s = self.study
        exp = tracking.ensure_experiment(
            self.client, SESSION_EXPERIMENT, tracking.default_artifact_root(self.store)
        )
        tags = {
            TAGS["study"]: s.name, TAGS["phase"]: "session", TAGS["command"]: command,
            TAGS["hardware"]: tracking.hardware(), TAGS["tracking_uri"]: str(self.store),
            TAGS["optuna_storage"]: str(s.storage),
            "git_sha": tracking.git_sha(),
        }
        run_id = tracking.start_run(self.client, exp, f"study-{s.name}", tags)
        resolved = OmegaConf.to_container(s.definition, resolve=True)
        tracking.log_params(self.client, run_id, tracking.flatten(resolved))
        self.client.log_text(run_id, mask(OmegaConf.to_yaml(resolved)), "study.yaml")
        return run_id

    def run(self, command: str = "") -> int:
        """Runs every cell; returns the number of failed final runs (0 when all went well)."""
        s = self.study
        cells = s.cells()
        seeds = f"{len(s.seeds)} seeds" + "".join(
            f", {len(own)} on {d}" for d in sorted(s.enabled_datasets())
            if (own := s.seeds_of(d)) != s.seeds)
        self.echo(f"study {s.name}: {len(cells)} cells x {seeds}; MLflow "
                  f"{self.store}; Optuna {s.storage}")
        for ds, why in s.skipped_datasets().items():
            self.echo(f"  {ds}: skipped ({why})")
        if self.committed is not None:
            c = self.committed
            self.echo(f"  resuming from {c.path}: {c.n_finished} finished runs over "
                      f"{c.n_sessions} earlier session(s) count as done")
        session = None if self.dry_run else self._open_session(command)
        status, failures, start = "FAILED", 0, time.perf_counter()
        try:
            from bench import interrupt

            for cell in cells:
                interrupt.check()
                tuned = self.tune_cell(cell) if cell.space is not None else None
                if cell.space is not None and tuned is None:  # dry run, tuning pending
                    self.echo(f"  {cell.phase} {cell.dataset}/{cell.arch}: after tuning, "
                              f"seeds {s.seeds_of(cell.dataset)}")
                    continue
                failures += self.finals(cell, tuned)
            status = "FINISHED"
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            raise
        finally:
            if session is not None:
                tracking.log_metrics(self.client, session, {
                    "session/wall_s": time.perf_counter() - start, "session/failed_runs": failures,
                })
                self.client.set_terminated(session, status)
        return failures


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m bench.study",
        description="Tune every dataset x architecture with an equal budget, retrain the best "
        "configuration under k seeds, run the baselines; resumable (finished work is skipped).",
    )
    ap.add_argument("definition", help="study definition, e.g. sweeps/study_cpu.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value changes to the definition "
                    "(e.g. seeds=3 tuning.n_trials=4)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print what is done and what would run, run nothing")
    ap.add_argument("--datasets", default=None,
                    help="comma-separated share of the definition's datasets for this process, run "
                    "in this order; run several processes on disjoint shares (same stores) to "
                    "use more cores")
    rec = ap.add_mutually_exclusive_group()
    rec.add_argument("--record", type=Path, default=None,
                     help="a committed tidy record whose finished runs and tuning trials count "
                     "as done (default: reports/<study>/record/ when it exists)")
    rec.add_argument("--no-record", action="store_true",
                     help="resume from the MLflow and Optuna stores only")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        study = load(args.definition, args.overrides)
        if args.datasets:
            only = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
            unknown = [d for d in only if d not in study.definition.datasets]
            if unknown:
                raise StudyError(f"--datasets: {unknown} not in {args.definition}; expected "
                                 f"some of {list(study.definition.datasets)}")
            study = replace(study, only=only)
        path = args.record or locate(Path("reports") / study.name)
        committed = None if args.no_record or path is None else Committed.load(path, study.name)
        if args.record is not None and committed is None:
            raise StudyError(f"--record {args.record}: not found (a record folder or CSV file)")
    except StudyError as exc:
        ap.error(str(exc))
    command = shlex.join(["python", "-m", "bench.study", *argv])
    from bench import errors, interrupt

    try:
        # Ctrl-C / SIGTERM end the run or trial in flight at its next batch (closed KILLED,
        # a trial queued again); the exit status is then 128 + the signal.
        with interrupt.deferred():
            failures = Runner(study, dry_run=args.dry_run, committed=committed).run(command)
    except (KeyboardInterrupt, SystemExit) as exc:
        if interrupt.received() is None and not isinstance(exc, KeyboardInterrupt):
            raise
        print(f"study {study.name} stopped by {interrupt.signal_name()}; finished work is "
              f"kept. Resume with: {mask(command)}", file=sys.stderr)
        return interrupt.exit_code()
    except Exception as exc:
        # a known error, or a full disk hit outside any run (the study's own session record)
        known = exc if isinstance(exc, errors.BenchError) else errors.out_of_space(exc, {
            "the MLflow store": study.tracking_store.sqlite_file,
            "the Optuna storage": study.storage.sqlite_file})
        if known is None or errors.wants_traceback():
            raise
        errors.report(known)
        print(f"Resume with: {mask(command)}", file=sys.stderr)
        return errors.EXIT_CODE
    if failures:
        print(f"{failures} final run(s) failed; re-run the same command to retry them.")
    print(f"Report: python -m bench.report --study {study.name} --tracking-uri "
          f"{study.tracking_store}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
