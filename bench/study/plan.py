"""The plan of a study: its cells (dataset x architecture, with the overrides that define
them), their seeds, and the config of each final run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property

from omegaconf import DictConfig, OmegaConf

from bench.config import compose
from bench.stores import StoreAddress
from bench.vocab import DETERMINISTIC_CELLS

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

    def cell_seeds(self, cell: Cell) -> list[int]:
        """The seeds a cell runs under: its dataset's, or the first alone for a deterministic
        baseline, whose numbers are the same under every seed (the report plans the same)."""
        seeds = self.seeds_of(cell.dataset)
        return seeds[:1] if cell.arch in DETERMINISTIC_CELLS else seeds

    def replicas(self, dataset: str) -> bool:
        """Whether the dataset's final runs train their seeds together as replicas: its own
        ``replicas``, else the study's (``off`` reads as false in YAML)."""
        own = self.definition.datasets[dataset].get("replicas")
        value = self.definition.get("replicas", "auto") if own is None else own
        return value in ("auto", True)

    @property
    def folds(self) -> str:
        """``tuning.folds`` as a sweep's ``folds.k`` takes it (YAML's bare off is false)."""
        value = self.definition.tuning.get("folds", "auto")
        return "off" if value in (None, False) else str(value)

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
