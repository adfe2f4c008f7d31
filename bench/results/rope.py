"""Each dataset's region of practical equivalence (ROPE): the rule, and where a run's came from.

The ROPE is part of the record (a row's ``rope`` and ``rope_source``), so the rule that fills it
lives with the record. Convention (the ``rope`` key of ``conf/dataset/<name>.yaml``): a
half-width, in the primary metric's units for metrics that are maximised (accuracy 0.005 = half
a point; R^2 0.005), and a fraction of the naive baseline's error for error metrics (0.01 = 1%
of the naive MAE/RMSE, so the value is unit-free and survives rescaling). A dataset without the
key (or ``rope: null``) gets :data:`DEFAULT_ROPE` for its direction.
"""

from __future__ import annotations

import math

import numpy as np

from bench.config import CONF_DIR, load_mapping

DEFAULT_ROPE = {"maximize": 0.005, "minimize": 0.01}
CONF_DATASETS = CONF_DIR / "dataset"


def default_rope(direction: str) -> float:
    return DEFAULT_ROPE[direction]


def resolve_rope(value, direction: str) -> tuple[float, str]:
    """The dataset's ROPE in its convention, and where it came from."""
    if value is not None and str(value).strip() not in ("", "None", "null", "nan"):
        r = float(value)
        if not (np.isfinite(r) and r >= 0):
            raise ValueError(f"rope: {value!r} is not allowed; expected a number >= 0")
        return r, "config"
    return default_rope(direction), "default"


def dataset_rope(dataset_name: str, direction: str, param: str | None = None) -> tuple[float, str]:
    """The ROPE of a dataset: the run's ``dataset.rope`` param, else the dataset config's
    ``rope`` key, else the default rule ."""
    if param is not None and not (isinstance(param, float) and math.isnan(param)):
        r, src = resolve_rope(param, direction)
        if src == "config":
            return r, "run config"
    path = CONF_DATASETS / f"{dataset_name}.yaml"
    if path.is_file():
        r, src = resolve_rope(load_mapping(path).get("rope"), direction)
        if src == "config":
            return r, f"conf/dataset/{dataset_name}.yaml"
    return default_rope(direction), "default rule"
