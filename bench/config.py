"""Start-up validation of the composed config.

Hydra already rejects unknown config-group options (``model=foo`` lists the available
ones); this catches bad *values* before any data is loaded or any run is opened, with a
message that names the key, the value and what is allowed. It imports neither torch nor
Lightning, so ``python -m bench`` refuses a bad value in well under a second instead of
after the seconds those imports take.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.errors import ConfigError
from bench.vocab import (
    CELLS,
    FIGURES,
    NORMALIZE,
    OPTIMIZERS,
    RECURRENT_CELLS,
    SCHEDULES,
    SUMMARIES,
    TOPOLOGIES,
    is_stacked,
)


def _shipped(package: str) -> Path:
    """A folder shipped as package data: ``conf/`` and ``sweeps/`` of the checkout in an
    editable install, their copies inside ``bench/`` in a wheel (pyproject.toml maps them),
    so a run finds its configs from any directory however the project was installed."""
    return Path(str(files(package)))


CONF_DIR = _shipped("bench.conf")
SWEEPS_DIR = _shipped("bench.sweeps")
TASKS = ("classification", "regression")
METRICS = {"classification": ("accuracy",), "regression": ("mae", "rmse", "r2")}
DIRECTIONS = ("maximize", "minimize")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "bf16-true", "16-true")
DATASET_KEYS = ("name", "kind", "task", "metric", "direction", "loss", "batch_size")


def compose(overrides: Sequence[str]) -> DictConfig:
    """The run config for ``overrides``, as ``python -m bench <overrides>`` composes it.

    Inside a running Hydra app (a sweep's job) the app's own search path is reused, so a
    user's ``--config-dir`` reaches the studies and trials composed from it too.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def load_mapping(path: Path) -> DictConfig:
    """A YAML config file whose top level is a mapping (a dataset, panel or experiment config);
    a list there is refused with a :class:`ConfigError` that names the file."""
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got a list")
    return cfg


def plain(node: DictConfig) -> dict[str, Any]:
    """A config mapping resolved into plain containers, typed as the mapping it is (params,
    optimiser settings and payloads are read from these, never from config nodes)."""
    out = OmegaConf.to_container(node, resolve=True)
    if not isinstance(out, dict):
        raise ConfigError(f"expected a mapping of keys to values, got {type(out).__name__}")
    return {str(k): v for k, v in out.items()}


def _choice(key: str, value, allowed: Iterable) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected one of {list(allowed)}")


def _positive_int(key: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected a positive integer")


def _fraction(key: str, value) -> None:
    if not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected a number in [0, 1)")


def _sizes(key: str, value) -> None:
    if isinstance(value, ListConfig | list):
        if not value:
            raise ConfigError(f"{key}: an empty list is not allowed; expected positive integers")
        for i, v in enumerate(value):
            _positive_int(f"{key}[{i}]", v)
    else:
        _positive_int(key, value)


def validate_model(m: DictConfig) -> None:
    _choice("model.cell", m.get("cell"), CELLS)
    if m.get("param_budget") is not None:
        _positive_int("model.param_budget", m.param_budget)
    if m.cell == "mlp":
        _sizes("model.hidden_sizes", m.get("hidden_sizes"))
        _fraction("model.dropout", m.get("dropout", 0.0))
    if m.cell not in RECURRENT_CELLS:
        return
    _choice("model.impl", m.impl, ("fused", "cell"))
    _choice("model.topology", m.topology, TOPOLOGIES)
    _sizes("model.hidden_size", m.hidden_size)
    _positive_int("model.num_layers", m.num_layers)
    stacked = is_stacked(m.topology)
    if isinstance(m.hidden_size, ListConfig) and len(m.hidden_size) > 1 and not stacked:
        raise ConfigError(
            f"model.hidden_size: a list of {len(m.hidden_size)} sizes needs a stacked "
            f"topology; model.topology is {m.topology!r}, expected one of "
            "['stacked', 'stacked_bidirectional']"
        )
    _fraction("model.dropout", m.dropout)
    _fraction("model.recurrent_dropout", m.recurrent_dropout)
    if m.recurrent_dropout > 0 and m.impl != "cell":
        raise ConfigError(
            f"model.recurrent_dropout: {m.recurrent_dropout} needs model.impl='cell' (the fused "
            "kernels cannot drop the recurrent state); set model.impl=cell or recurrent_dropout=0"
        )
    _choice("model.head", m.head, ("linear", "mlp"))
    _choice("model.summary", m.get("summary", "last"), SUMMARIES)
    _positive_int("model.head_hidden", m.head_hidden)
    _choice("model.init", m.init, ("pytorch", "keras"))
    _positive_int("model.embedding_dim", m.embedding_dim)


def validate_dataset(d: DictConfig) -> None:
    for key in DATASET_KEYS:
        if d.get(key) is None:
            raise ConfigError(f"dataset.{key}: missing; every dataset config must set {list(DATASET_KEYS)}")
    _choice("dataset.task", d.task, TASKS)
    _choice("dataset.metric", d.metric, METRICS[d.task])
    _choice("dataset.direction", d.direction, DIRECTIONS)
    allowed_losses = ("cross_entropy",) if d.task == "classification" else ("mae", "mse")
    _choice("dataset.loss", d.loss, allowed_losses)
    _positive_int("dataset.classes", d.get("classes"), allow_none=True)
    if d.get("kind") == "ucr":
        _choice("dataset.normalize", d.get("normalize", "dimension"), NORMALIZE)


def _non_negative(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected a number >= 0")


def validate_optim(o: DictConfig) -> None:
    _non_negative("optim.weight_decay", o.get("weight_decay", 0.0))
    _choice("optim.schedule", o.get("schedule", "none"), SCHEDULES)
    if o.get("schedule", "none") == "none":
        return
    _non_negative("optim.min_lr", o.get("min_lr", 0.0))
    factor = o.get("plateau_factor", 0.5)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor < 1:
        raise ConfigError(f"optim.plateau_factor: {factor!r} is not allowed; expected a number "
                          "in (0, 1)")
    _positive_int("optim.plateau_patience", o.get("plateau_patience", 50))


def validate_trainer_clip(t: DictConfig) -> None:
    clip = t.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int | float)
                             or not clip > 0):
        raise ConfigError(f"trainer.gradient_clip_val: {clip!r} is not allowed; expected a "
                          "positive number (the largest gradient norm), or null for no clipping")


def refuse_written_passwords(cfg: DictConfig, storage: object = None) -> None:
    """For what the command line composed: a password given there was masked before Hydra
    composed the config, so one still in plain text was written in a config file (a
    ``conf/tracking`` file, a ``+sweep=`` file), which Hydra copies into every run folder."""
    from bench.stores import STORAGE_ENV, TRACKING_ENV, password_refusal

    for key, url, variable in (
            ("tracking.uri", OmegaConf.select(cfg, "tracking.uri"), TRACKING_ENV),
            ("hydra.sweeper.storage", storage, STORAGE_ENV)):
        refused = password_refusal(key, url, variable)
        if refused is not None:
            raise refused


def check_fold_setting(key: str, value) -> None:
    """Refuses a fold setting that is neither ``auto``, ``off`` nor a count of at least 2
    (YAML reads a bare ``off`` as false, which counts as written)."""
    if value is None or isinstance(value, bool) or value in ("auto", "off"):
        return
    if isinstance(value, int) and value >= 2:
        return
    raise ConfigError(f"{key}: {value!r} is not allowed; expected auto (k folds on small "
                      "training sets), off (the validation hold-out) or a number of folds >= 2")


def validate_folds(f) -> None:
    """``folds``: tuning on folds of the training cases (``bench.fold_train``)."""
    if f is None:
        return
    check_fold_setting("folds.k", f.get("k", "off"))
    for key in ("auto_k", "max_cases"):
        _positive_int(f"folds.{key}", f.get(key, 5))
    if int(f.get("auto_k", 5)) < 2:
        raise ConfigError(f"folds.auto_k: {f.auto_k!r} is not allowed; expected at least 2 folds")
    if not isinstance(f.get("seed", 0), int) or isinstance(f.get("seed", 0), bool):
        raise ConfigError(f"folds.seed: {f.seed!r} is not allowed; expected an integer")


def validate(cfg: DictConfig) -> None:
    if cfg.get("dataset") is None:
        raise ConfigError("dataset: missing; choose one with dataset=<name> (see conf/dataset/)")
    validate_dataset(cfg.dataset)
    validate_model(cfg.model)
    _positive_int("batch_size", cfg.batch_size)
    _positive_int("eval_batch_size", cfg.eval_batch_size)
    _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    if not isinstance(cfg.optim.lr, int | float) or cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: {cfg.optim.lr!r} is not allowed; expected a positive number")
    validate_optim(cfg.optim)
    t = cfg.trainer
    _positive_int("trainer.max_epochs", t.max_epochs)
    _choice("trainer.precision", str(t.precision), PRECISIONS)
    _positive_int("trainer.early_stopping_patience", t.early_stopping_patience, allow_none=True)
    validate_folds(cfg.get("folds"))
    validate_trainer_clip(t)
    _non_negative("tracking.flush_s", cfg.tracking.get("flush_s", 15.0))
    _choice("tracking.figures", cfg.tracking.get("figures", "runs"), FIGURES)
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed: {cfg.seed!r} is not allowed; expected an integer")
