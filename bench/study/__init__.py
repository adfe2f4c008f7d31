"""``python -m bench.study sweeps/study_<name>.yaml``: the whole comparison protocol, resumable.

For every dataset x architecture of a study definition it (1) tunes on the validation split with
the same trial budget for every architecture, (2) retrains the best configuration under each of
the study's seeds and tests it once, and (3) runs the naive and MLP baselines under the same
seeds. All of it goes to MLflow with the tags the report reads (:data:`TAGS`), so the report is
a pure function of the MLflow store.

A dataset's ``tuning_seeds: [0, 1]`` repeats its tuning with more than one sampler seed (each
repeat is its own Optuna study, ``<study>.<dataset>.<arch>.t<seed>``, and its retrains carry a
``tuning_seed`` tag), so the report can say how much of the spread comes from tuning.

``replicas: auto`` (the default; ``off``, and per dataset) trains a cell's seeds still to run
together as one grouped model (:func:`bench.replica_train.run_seeds`): many small runs cost
little more than one, and each seed's run records what ``bench.train.run`` would, its results
equal within float tolerance (dropout masks excepted, drawn from the group's random stream);
configurations it cannot take (the naive baseline, an accelerator, mixed precision) run one
per seed. A ``replicas`` tag on every final run gives its group's size, 1 for a run alone.

The definition is merged onto :data:`DEFAULTS`, then the ``key=value`` overrides of the command
line onto it. ``baselines: {}`` or ``baselines: null`` (``baselines={}`` on the command line)
means no baselines at all, where a merge would otherwise keep the default ones;
``baselines.mlp=null`` drops one. Every key and value is checked before any work (the keys of
:data:`DEFAULTS`, and per dataset ``overrides``, ``enabled``, ``needs``, ``seeds``,
``tuning_seeds``, ``architectures``, ``baselines``, ``verdict`` and ``replicas``): a
misspelled key or a bad value stops the study with a message naming the key, the file or
override that wrote it and what was expected, because a silently ignored budget would run the
default one and give a wrong result.

Resuming is by construction rather than by bookkeeping: a tuning cell is skipped when its Optuna
study already holds the budgeted number of finished trials, and a final run is skipped when
MLflow holds a FINISHED run with the same study, phase, dataset, architecture and seed tags. A
crash or Ctrl-C therefore loses at most the runs that were in flight. On a machine without the
stores (a fresh clone, another node), the committed tidy record ``reports/<study>/record/``
stands in for them (:mod:`bench.study.resume`): its final runs count as done and its tuning trials
rebuild a missing Optuna study, so a study can run over several sittings and machines.

The package: :mod:`~bench.study.definition` (what a definition may hold, read and checked),
:mod:`~bench.study.plan` (its cells and the config of each final run),
:mod:`~bench.study.runner` (executes the plan), :mod:`~bench.study.resume` (a committed record
standing in for the stores) and :mod:`~bench.study.cli` (the command line).
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use, so that reading and checking a definition (``bench.study.definition``)
# does not first import MLflow, torch and Lightning: a mistake in it is refused in a second.
_HOMES = {"main": "cli", "DEFAULTS": "definition", "load": "definition", "Cell": "plan",
          "Study": "plan", "final_config": "plan", "SESSION_EXPERIMENT": "runner",
          "Runner": "runner"}

__all__ = ["DEFAULTS", "SESSION_EXPERIMENT", "Cell", "Runner", "Study", "final_config", "load",
           "main"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bench.study' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bench.study.{_HOMES[name]}"), name)
