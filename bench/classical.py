"""A classical baseline's run (``model=classical``), recorded as every other run is.

The methods (:mod:`bench.models.classical`) are fitted outside Lightning: they have no weights
to train and no epochs, and they need what a batch does not carry (every TRAIN case, the
series before each target). What they predict is scored on the test split's own targets and
naive forecasts with the models' metric code (:func:`bench.task.make_metrics`, units and MASE
as the task derives them), and recorded under the same MLflow tags, params and metric keys
(``test/<metric>``, ``test/naive_<metric>``, ``time/wall_s``), so the study, the tidy record
and the report take its runs as they take the naive baseline's. Deterministic: one run stands
for every seed.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any, cast

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import data, tracking
from bench.config import validate
from bench.console import quiet_third_party
from bench.data.base import DatasetInfo, TensorSplit, WindowSplit
from bench.errors import ConfigError
from bench.models import classical as methods
from bench.stores import mask
from bench.task import make_metrics
from bench.train import RunResult

METHOD_TAG = "classical_method"


def run(cfg: DictConfig, *, tags: dict[str, str] | None = None) -> RunResult:
    """Opens the MLflow run, fits and tests the dataset's classical method, closes the run in
    every outcome (FAILED with the error in its ``error`` tag, as a training run)."""
    quiet_third_party()
    validate(cfg)
    prepared = data.build(cfg.dataset, cfg.data_dir)  # refused before anything is recorded
    store = tracking.store_of(cfg)
    client, exp_id = tracking.open_experiment(store, cfg.tracking.experiment,
                                              cfg.tracking.artifact_root)
    run_tags = {**tracking.standard_tags(cfg, "classical"), tracking.TAGS["seed"]: cfg.seed,
                tracking.TAGS["hardware"]: tracking.hardware(),
                tracking.TAGS["command"]: tracking.command_line(), **(tags or {})}
    name = cfg.get("run_name") or f"{cfg.dataset.name}-classical"
    run_id = tracking.start_run(client, exp_id, name, run_tags)
    result = RunResult(run_id, "RUNNING", math.nan, str(cfg.dataset.direction),
                       experiment_id=exp_id, store=store)
    start = time.perf_counter()
    try:
        resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        tracking.log_params(client, run_id, tracking.run_params(resolved, tokens=False))
        client.log_text(run_id, mask(OmegaConf.to_yaml(resolved)), "config.yaml")
        info = prepared.info
        result.units = info.units
        tracking.log_tags(client, run_id, {tracking.TAGS["units"]: info.units or None,
                                           tracking.TAGS["task"]: info.task})
        fit_start = time.perf_counter()
        method, preds, extra = predict(prepared, cfg)
        fit_s = time.perf_counter() - fit_start
        tracking.log_tags(client, run_id, {METHOD_TAG: method})
        tracking.log_params(client, run_id, {"n_params": 0, **extra})
        result.test_metrics = score(info, preds, prepared.test)
        # no validation score: the method is fitted on the cases the networks validate on
        tracking.log_metrics(client, run_id, {**result.test_metrics, "epochs_trained": 0,
                                              "time/fit_s": fit_s})
        result.status = "FINISHED"
        return result
    except BaseException as exc:
        result.status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
        tracking.log_tags(client, run_id, {tracking.TAGS["error"]:
                                           f"{type(exc).__name__}: {exc}"[:4000]})
        client.log_text(run_id, mask("".join(traceback.format_exception(exc))), "error.txt")
        raise
    finally:
        result.wall_time_s = time.perf_counter() - start
        try:
            tracking.log_metrics(client, run_id, {"time/wall_s": result.wall_time_s})
        finally:
            client.set_terminated(run_id, result.status if result.status in (
                "FINISHED", "KILLED") else "FAILED")


def predict(prepared, cfg: DictConfig) -> tuple[str, torch.Tensor, dict]:
    """The method the dataset's kind calls for, and its predictions for the test split in the
    split's order (class indices, or targets in the split's scaled units)."""
    train, val, test = prepared.train, prepared.val, prepared.test
    info: DatasetInfo = prepared.info
    if cfg.dataset.get("kind") == "ucr" and isinstance(test, TensorSplit) and \
            isinstance(train, TensorSplit) and isinstance(val, TensorSplit):
        # every TRAIN case: the hold-out the networks validate on is part of the TRAIN file
        xs = [s.x.numpy() for s in (train, val) if len(s)]
        ys = [s.y.numpy() for s in (train, val) if len(s)]
        lengths = None
        if train.lengths is not None or test.lengths is not None:
            lengths = np.concatenate([_lengths(s) for s in (train, val) if len(s)])
        x = np.concatenate(_padded(xs))
        preds = methods.nearest_neighbour_dtw(
            x, np.concatenate(ys), test.x.numpy(), classification=info.task == "classification",
            train_lengths=lengths, test_lengths=None if lengths is None else _lengths(test))
        return methods.DTW, torch.as_tensor(preds), {"classical.train_cases": len(x)}
    if isinstance(test, WindowSplit):
        horizon = test.step + test.delay
        if horizon != 1:
            raise ConfigError(f"model=classical: dataset {info.name} forecasts {horizon} rows "
                              "ahead (dataset.step + dataset.delay); exponential smoothing here "
                              "makes one-step-ahead forecasts only")
        anchors = test.anchors.numpy()
        rows = anchors + test.delay
        series = test.target.numpy()[: int(rows.max()) + 1]
        fit_rows = int(rows.min())
        season = cfg.dataset.get("season")
        fit = methods.exponential_smoothing(series, fit_rows, int(season) if season else None)
        return fit.form, torch.as_tensor(fit.forecasts[rows], dtype=torch.float32), {
            "classical.fit_rows": fit_rows, "classical.aicc": round(fit.aicc, 4)}
    raise ConfigError(f"model=classical: dataset {info.name} is neither an archive set of "
                      "whole series nor a forecast series; expected e.g. dataset=gunpoint or "
                      "dataset=airpassengers")


def _lengths(split: TensorSplit) -> np.ndarray:
    if split.lengths is not None:
        return split.lengths.numpy()
    return np.full(len(split), split.x.shape[1])


def _padded(xs: list[np.ndarray]) -> list[np.ndarray]:
    """Splits padded to one length (each split pads to its own longest case)."""
    width = max(x.shape[1] for x in xs)
    return [np.pad(x, [(0, 0), (0, width - x.shape[1])] + [(0, 0)] * (x.ndim - 2)) for x in xs]


def score(info: DatasetInfo, preds: torch.Tensor, test) -> dict[str, float]:
    """``test/*`` and ``test/naive_*`` as a training run's test step logs them."""
    batch = test[torch.arange(len(test))]
    y, naive = batch["y"], batch["naive"]
    if info.task == "classification":
        preds, naive = preds.long(), naive.long()
    else:
        preds, naive = preds.float(), naive.float()
    values: dict[str, float] = {}
    for prefix, p in (("test/", preds), ("test/naive_", naive)):
        metrics = make_metrics(info).clone(prefix=prefix)
        metrics.update(p, y)
        values.update({k: float(v) for k, v in metrics.compute().items()})
    if info.task == "regression":
        scale = abs(info.target_scale)
        for k in [k for k in values if k.endswith(("mae", "rmse"))]:
            values[f"{k}_units"] = values[k] * scale
        if info.mase_scale:
            for k in [k for k in values if k.endswith("mae")]:
                values[k[: -len("mae")] + "mase"] = values[k] / info.mase_scale
    return values
