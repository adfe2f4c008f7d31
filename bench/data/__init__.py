"""Dataset loaders. ``build(cfg.dataset, data_dir)`` dispatches on ``dataset.kind``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from bench.data.base import ConfigError, DataError, DatasetInfo, Prepared

# kind -> module exposing ``build(dataset_cfg, data_dir: Path) -> Prepared``
KINDS = {
    "synthetic": "bench.data.synthetic",
    "mnist": "bench.data.mnist",
    "imdb": "bench.data.imdb",
    "series": "bench.data.series",
    "ucr": "bench.data.ucr",
}


def default_data_dir() -> Path:
    """``BENCH_DATA_DIR`` if set, else the per-user cache ``~/.cache/bench``."""
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench"


def build(dataset_cfg, data_dir: str | Path | None = None) -> Prepared:
    kind = dataset_cfg.get("kind")
    if kind not in KINDS:
        raise ConfigError(
            f"dataset.kind: {kind!r} is not a known dataset kind; expected one of {sorted(KINDS)}"
        )
    module = importlib.import_module(KINDS[kind])
    prepared = module.build(dataset_cfg, Path(data_dir) if data_dir else default_data_dir())
    classes = dataset_cfg.get("classes")
    if classes is not None and prepared.info.num_classes != classes:
        # the config's count is what a record without fit metrics takes its chance loss from
        raise DataError(f"dataset.classes: {classes}, but {prepared.info.name} has "
                        f"{prepared.info.num_classes} classes; expected the data's count")
    return prepared


__all__ = ["ConfigError", "DataError", "DatasetInfo", "Prepared", "build", "default_data_dir"]
