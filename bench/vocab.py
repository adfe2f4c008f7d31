"""The words a user writes and the code keys on: cells, topologies, losses, optimisers.

Validation (:mod:`bench.config`), the models, the task, the study schema, the MLflow params and
the GPU check all speak this vocabulary. It lives in one module that imports nothing, so a
config can be refused before torch loads, and a new cell or topology is named once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RECURRENT_CELLS = ("rnn", "lstm", "gru")
BASELINE_CELLS = ("mlp", "naive", "classical")
# references that train nothing and are deterministic: one run stands for every seed
# (bench.classical), and the report never counts them as contenders
DETERMINISTIC_CELLS = ("classical",)
CELLS = (*RECURRENT_CELLS, *BASELINE_CELLS)
TOPOLOGIES = ("single", "stacked", "bidirectional", "stacked_bidirectional")
# the topologies a study compares by default (stacked_bidirectional is for single runs)
STUDY_TOPOLOGIES = ("single", "stacked", "bidirectional")
LOSSES = ("cross_entropy", "mae", "mse")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("none", "cosine", "plateau")  # learning-rate schedules (bench.task.make_schedule)
SUMMARIES = ("last", "mean", "max")  # what a recurrent head reads of the sequence
FIGURES = ("runs", "all", "none")  # which runs draw their PNGs (bench.train.draws_figures)
NORMALIZE = ("dimension", "series", "none")  # archive datasets' normalisation (bench.data.ucr)

# An Optuna trial counts towards a sweep's ``n_trials`` once it ended on its own terms: a pruned
# trial was judged (and costs as much budget as it used), a failed one was not.
FINISHED_TRIAL_STATES = ("COMPLETE", "PRUNED")

# A run fitted its training data when its final epoch's training loss is below this fraction of
# the chance loss (ln K for K classes; the best constant prediction's loss for regression): at
# or above it the model learned next to nothing about the cases it trained on, whatever its
# validation curve did. Runs record the ratio (bench.task), the report judges cells by it.
FIT_RATIO = 0.9


def fitted(ratio: float) -> bool | None:
    """Whether a run with this training-to-chance loss ratio fitted; None when unknown."""
    return ratio < FIT_RATIO if ratio == ratio and abs(ratio) != float("inf") else None


def fit_label(ratio: float) -> str | None:
    """The run's ``fit`` tag: ``fitted``, ``did not fit``, or none when it cannot be judged."""
    ok = fitted(ratio)
    return None if ok is None else ("fitted" if ok else "did not fit")


def is_recurrent(cell: object) -> bool:
    return cell in RECURRENT_CELLS


def is_stacked(topology: object) -> bool:
    """``num_layers`` means something only for a stacked topology: the other ones have one
    recurrent layer (a bidirectional one has one per direction)."""
    return str(topology).startswith("stacked")


def uses_num_layers(model: Mapping[str, Any]) -> bool:
    """Whether the built model reads ``model.num_layers``: a stacked recurrent model whose
    ``hidden_size`` is one number (a list of sizes sets the depth itself)."""
    return (is_recurrent(model.get("cell")) and is_stacked(model.get("topology", ""))
            and isinstance(model.get("hidden_size"), int))


def is_finished(state: object) -> bool:
    """True for a finished trial, given an Optuna ``TrialState`` or its name."""
    return getattr(state, "name", state) in FINISHED_TRIAL_STATES


def count_finished(states: Iterable[object]) -> int:
    return sum(is_finished(s) for s in states)
