"""Tuning on folds of the training cases, and the final models trained on all of them.

A tuning trial on a small training set (``folds.k``, see :mod:`bench.data.folds` for the rule)
trains the trial's configuration on ``k`` folds of the pooled training cases, the folds as the
replicas of one grouped model (:func:`bench.replica_train.train_replicas`): each fold keeps
its own rows, batch order, early stopping and best weights. The trial's objective is the mean
over folds of the validation metric at the epoch where that mean is best; that epoch count is
recorded with the trial (``tuned_epochs``), and the final model of each seed then trains on all
training cases for exactly that many epochs, with nothing left to validate on, and touches the
test split once. A trial never evaluates the test split.

A fold that stops early (patience) keeps its last score for the epochs after it stopped, so
the mean at every epoch is over all ``k`` folds: what the pruner sees each epoch, and what
chooses the epochs. Ties go to the later epoch, as :class:`bench.train.BestWeights` breaks
them on a plateau.

One MLflow run records a trial: the mean curves under the usual keys (``val/<metric>``,
``train/loss``...), each fold's under ``fold<i>/...``, the objective as
``best/val_<metric>``, the per-fold scores behind it as ``fold<i>/val_<metric>``, and the
tags ``folds`` and ``tuned_epochs``.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bench import data as bench_data
from bench import tracking
from bench.data.base import Prepared
from bench.data.folds import AUTO_K, MAX_CASES, Fold, fold_count, make_folds, pooled, subset
from bench.replica_train import REPLICAS_TAG, ReplicaData, ReplicaResult, train_replicas
from bench.train import RunResult

FOLDS_TAG = "folds"                # the number of folds a trial was scored on
TUNED_EPOCHS_TAG = "tuned_epochs"  # epochs at the best mean over folds; a final run's budget
FOLD_VALUES_ATTR = "fold_values"   # the Optuna user attribute with the per-fold scores
TRAIN_CASES_TAG = "train_cases"    # a final run's training cases: train and val pooled


@dataclass
class FoldRunResult(RunResult):
    """A fold trial's outcome; ``objective`` is the mean of ``fold_values``."""

    folds: int = 0
    fold_values: list[float] = field(default_factory=list)
    tuned_epochs: int = 0


@dataclass
class FoldOutcome:
    """What training on the folds gave, before anything is recorded."""

    results: list[ReplicaResult]
    mean_curve: list[float]            # per epoch, over all folds (stopped ones carried)
    best_epoch: int                    # 0-based, into mean_curve
    fold_values: list[float]           # each fold's score at best_epoch

    @property
    def objective(self) -> float:
        return self.mean_curve[self.best_epoch] if self.mean_curve else math.nan

    @property
    def tuned_epochs(self) -> int:
        return self.best_epoch + 1


@dataclass
class TrialHooks:
    """What a sweep gives a fold trial: ``report(epoch, mean)`` for its pruner (it may raise
    ``optuna.TrialPruned``), ``started(run_id)`` once the MLflow run exists."""

    report: Callable[[int, float], None] | None = None
    started: Callable[[str], None] | None = None


def setting(cfg: DictConfig) -> Any:
    """The config's ``folds.k`` (absent: off)."""
    f = cfg.get("folds")
    return "off" if f is None else f.get("k", "off")


def requested(cfg: DictConfig) -> bool:
    """Whether the config may tune on folds; ``auto`` still depends on the data's size."""
    k = setting(cfg)
    return not (k is None or k is False or k == "off")


def count_for(cfg: DictConfig, prepared: Prepared) -> int | None:
    """The folds this config's trials use on these data; None: the validation hold-out.

    The grouped model trains what ``bench.replica_train`` can compute; a model it cannot (the
    naive baseline, an accelerator run) keeps the hold-out under ``auto`` and is refused
    under an explicit count, since a silently different protocol would be a wrong result.
    """
    from bench.replica_train import unsupported

    f = cfg.get("folds") or {}
    n = len(prepared.train) + len(prepared.val)
    k = fold_count(setting(cfg), n, auto_k=int(f.get("auto_k", AUTO_K)),
                   max_cases=int(f.get("max_cases", MAX_CASES)))
    if k is None:
        return None
    why = unsupported(cfg)
    if why is not None:
        if setting(cfg) == "auto":
            return None
        from bench.errors import ConfigError

        raise ConfigError(f"folds.k: {k} folds train as one grouped model, and {why}; "
                          "expected folds.k=off or folds.k=auto for this run")
    return k


def fold_splits(cfg: DictConfig, prepared: Prepared, k: int) -> tuple[list[Fold], Any]:
    """The folds of the pooled training cases, and that pooled split."""
    f = cfg.get("folds") or {}
    everything = pooled(prepared.train, prepared.val)
    folds = make_folds(everything, k, task=prepared.info.task, seed=int(f.get("seed", 0)))
    return folds, everything


def _carried(values: list[tuple[int, float]], epochs: int) -> list[float]:
    """A fold's per-epoch values over ``epochs`` epochs, its last value carried after it
    stopped (NaN before its first)."""
    out, last = [], math.nan
    by_epoch = dict(values)
    for e in range(epochs):
        last = by_epoch.get(e, last)
        out.append(last)
    return out


def _mean_curves(results: list[ReplicaResult], key: str, epochs: int) -> list[float]:
    curves = np.array([_carried(r.history.get(key, []), epochs) for r in results])
    return [float(v) for v in curves.mean(0)] if len(curves) else []


def summarise(results: list[ReplicaResult], metric: str, maximize: bool) -> FoldOutcome:
    """The mean-over-folds curve, its best epoch (ties: the later) and the fold scores there."""
    key = f"val/{metric}"
    epochs = max((r.epochs_trained for r in results), default=0)
    curve = _mean_curves(results, key, epochs)
    best, best_value = -1, -math.inf if maximize else math.inf
    for e, v in enumerate(curve):
        if math.isfinite(v) and (v >= best_value if maximize else v <= best_value):
            best, best_value = e, v
    if best < 0:
        return FoldOutcome(results, curve, max(epochs - 1, 0), [math.nan] * len(results))
    values = [_carried(r.history.get(key, []), epochs)[best] for r in results]
    return FoldOutcome(results, curve, best, values)


def fit_folds(cfg: DictConfig, prepared: Prepared, k: int, *, grouped: bool = True,
              report: Callable[[int, float], None] | None = None) -> FoldOutcome:
    """Trains ``cfg`` on ``k`` folds: as one grouped model, or (``grouped=False``) one fold
    after another through the same loop, which the grouped result must equal.

    Every fold starts from the weights ``cfg.seed`` gives (as ``bench.train.run`` would build
    them) and draws its batch order from that seed over its own rows. ``report(epoch, mean)``
    receives the mean over folds after every epoch; with ``grouped=False`` the folds run in
    turn, so it is called once they all ran, epoch by epoch.
    """
    import lightning.pytorch as pl

    from bench.models import build_model
    from bench.models.replicas import ReplicaNet
    from bench.task import NonFiniteLoss

    info = prepared.info
    folds, everything = fold_splits(cfg, prepared, k)
    seed = int(cfg.seed)
    data = [ReplicaData(seed, subset(everything, f.train), subset(everything, f.val))
            for f in folds]
    metric = str(cfg.dataset.metric)
    maximize = cfg.dataset.direction == "maximize"
    t = cfg.trainer
    kwargs: dict[str, Any] = dict(
        loss=cfg.dataset.loss, optim=dict(cfg.optim), batch_size=int(cfg.batch_size),
        eval_batch_size=int(cfg.eval_batch_size), max_epochs=int(t.max_epochs),
        patience=t.get("early_stopping_patience"), gradient_clip_val=t.get("gradient_clip_val"),
        metric=metric, direction=str(cfg.dataset.direction),
        limit_train_batches=t.get("limit_train_batches"),
        limit_val_batches=t.get("limit_val_batches"))

    def models(n: int) -> list:
        out = []
        for _ in range(n):
            pl.seed_everything(seed, workers=True, verbose=False)
            out.append(build_model(cfg.model, info, cfg.data_dir))
        return out

    def check(results: list[ReplicaResult]) -> None:
        failed = next((r for r in results if r.status != "FINISHED"), None)
        if failed is not None:  # a fold that cannot train fails the configuration
            raise NonFiniteLoss(f"fold {results.index(failed)}: {failed.error}")

    def on_epoch(epoch: int, results: list[ReplicaResult]) -> None:
        check(results)
        if report is not None:
            curve = _mean_curves(results, f"val/{metric}", epoch + 1)
            report(epoch, curve[epoch])

    if grouped:
        results = train_replicas(ReplicaNet(models(k)), info, data, on_epoch=on_epoch, **kwargs)
    else:
        results = []
        for d in data:
            results += train_replicas(ReplicaNet(models(1)), info, [d], **kwargs)
            check(results)
        epochs = max(r.epochs_trained for r in results)
        for e in range(epochs):
            if report is not None:
                report(e, _mean_curves(results, f"val/{metric}", e + 1)[e])
    check(results)
    return summarise(results, metric, maximize)


def _fold_metrics(outcome: FoldOutcome, metric: str) -> tuple[dict[int, dict[str, float]],
                                                                dict[str, float]]:
    """Per-epoch metrics (mean curves and each fold's) and the final ones of a fold trial."""
    results = outcome.results
    epochs = len(outcome.mean_curve)
    keys = sorted({k for r in results for k in r.history if k != "epoch"})
    per_epoch: dict[int, dict[str, float]] = {e: {"epoch": float(e)} for e in range(epochs)}
    for key in keys:
        for e, v in enumerate(_mean_curves(results, key, epochs)):
            if math.isfinite(v):
                per_epoch[e][key] = v
        for i, r in enumerate(results):
            for e, v in r.history.get(key, []):
                if key != "time/epoch_s":
                    per_epoch[e][f"fold{i}/{key}"] = v
    final = {f"best/val_{metric}": outcome.objective, "epochs_trained": float(epochs),
             TUNED_EPOCHS_TAG: float(outcome.tuned_epochs)}
    for i, (r, v) in enumerate(zip(results, outcome.fold_values, strict=True)):
        final[f"fold{i}/val_{metric}"] = v
        final[f"fold{i}/best_val_{metric}"] = r.best_score
        final[f"fold{i}/epochs_trained"] = float(r.epochs_trained)
    return per_epoch, {k: v for k, v in final.items() if math.isfinite(v)}


def run_trial(cfg: DictConfig, *, hooks: TrialHooks | None = None,
              tags: dict[str, str] | None = None, parent_run_id: str | None = None,
              callbacks: tuple | list = (), grouped: bool = True) -> RunResult:
    """A sweep trial: on folds when ``cfg.folds`` and the data's size call for them, else
    ``bench.train.run`` on the validation hold-out (with ``callbacks``); never the test split.

    The MLflow run is opened before anything can fail and closed in every outcome, as
    ``bench.train.run`` closes its own: FINISHED (tagged ``pruned`` when the pruner stopped
    it), FAILED with the error, or KILLED.
    """
    from bench.config import validate
    from bench.console import quiet_third_party
    from bench.models import arch_name
    from bench.stores import mask
    from bench.train import _failure_status, _record_failure, run

    quiet_third_party()
    validate(cfg)
    hooks = hooks or TrialHooks()
    prepared = bench_data.build(cfg.dataset, cfg.data_dir)
    k = count_for(cfg, prepared)
    if k is None:
        return run(cfg, callbacks=callbacks, tags=tags, parent_run_id=parent_run_id, test=False)

    store = tracking.store_of(cfg)
    client, exp_id = tracking.open_experiment(
        store, cfg.tracking.experiment, cfg.tracking.artifact_root)
    arch = arch_name(cfg.model)
    run_tags = {**tracking.standard_tags(cfg, arch), tracking.TAGS["seed"]: cfg.seed,
                tracking.TAGS["hardware"]: tracking.hardware(),
                tracking.TAGS["command"]: tracking.command_line(),
                tracking.TAGS["units"]: prepared.info.units or None,
                tracking.TAGS["task"]: prepared.info.task,
                **(tags or {}), FOLDS_TAG: k, REPLICAS_TAG: k if grouped else 1}
    name = cfg.get("run_name") or f"{cfg.dataset.name}-{arch}-seed{cfg.seed}"
    run_id = tracking.start_run(client, exp_id, name, run_tags, parent_run_id)
    metric = str(cfg.dataset.metric)
    result = FoldRunResult(run_id, "RUNNING", math.nan, str(cfg.dataset.direction),
                           experiment_id=exp_id, store=store, units=prepared.info.units,
                           folds=k)
    if hooks.started is not None:
        hooks.started(run_id)
    start = time.perf_counter()
    try:
        resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        tracking.log_params(client, run_id, tracking.run_params(resolved, tokens=False))
        client.log_text(run_id, mask(OmegaConf.to_yaml(resolved)), "config.yaml")
        outcome = fit_folds(cfg, prepared, k, grouped=grouped, report=hooks.report)
        per_epoch, final = _fold_metrics(outcome, metric)
        for epoch, values in per_epoch.items():
            tracking.log_metrics(client, run_id, values, step=epoch)
        result.wall_time_s = time.perf_counter() - start
        tracking.log_metrics(client, run_id, {**final, "time/wall_s": result.wall_time_s})
        tracking.log_tags(client, run_id, {TUNED_EPOCHS_TAG: outcome.tuned_epochs})
        result.objective = outcome.objective
        result.fold_values = list(outcome.fold_values)
        result.tuned_epochs = outcome.tuned_epochs
        result.epochs_trained = len(outcome.mean_curve)
        result.val_metrics = dict(per_epoch.get(outcome.best_epoch, {}))
        result.val_metrics = {k: v for k, v in result.val_metrics.items()
                              if k.startswith("val/")}
        result.status = "FINISHED"
        client.set_terminated(run_id, "FINISHED")
        return result
    except BaseException as exc:
        result.status = _failure_status(exc)
        result.wall_time_s = time.perf_counter() - start
        try:
            _record_failure(client, run_id, exc, result.status)
            if result.status != "PRUNED":
                client.log_text(run_id, mask("".join(traceback.format_exception(exc))),
                                "error.txt")
            tracking.log_metrics(client, run_id, {"time/wall_s": result.wall_time_s})
        finally:
            client.set_terminated(run_id, {"PRUNED": "FINISHED", "KILLED": "KILLED"}.get(
                result.status, "FAILED"))
        raise


def final_config(cfg: DictConfig, tuned_epochs: int) -> DictConfig:
    """The config of a final model after fold tuning: the tuned number of epochs, nothing to
    stop early on (no validation cases are left out), and a schedule that spans the trials'
    budget: stopping a cosine schedule at the tuned epoch, not squeezing it into it, keeps the
    rates the folds were scored with."""
    out = cast(DictConfig, OmegaConf.create(OmegaConf.to_container(cfg)))
    if OmegaConf.select(out, "optim.schedule_epochs") is None:
        OmegaConf.update(out, "optim.schedule_epochs", int(cfg.trainer.max_epochs),
                         force_add=True)
    OmegaConf.update(out, "trainer.max_epochs", int(tuned_epochs), force_add=True)
    OmegaConf.update(out, "trainer.early_stopping_patience", None, force_add=True)
    return out


def fit_all(cfg: DictConfig, seeds: list[int], prepared: Prepared | None = None
            ) -> tuple[list[ReplicaResult], list]:
    """The final models after fold tuning: one replica per seed, each on all training cases
    for ``cfg.trainer.max_epochs`` epochs, keeping its last weights, tested once.

    Same arguments and results as :func:`bench.replica_train.fit_seeds`, whose place it takes
    in :func:`bench.replica_train.run_seeds`.
    """
    from bench.replica_train import fit_and_test

    prepared = prepared or bench_data.build(cfg.dataset, cfg.data_dir)
    return fit_and_test(cfg, seeds, prepared, pooled(prepared.train, prepared.val), None, None)


def run_final(cfg: DictConfig, seeds: list[int], tuned_epochs: int, *,
              tags: dict[str, str] | None = None, grouped: bool = True) -> list[RunResult]:
    """The final runs after fold tuning, one MLflow run per seed (``run_seeds``'s record),
    tagged with the epochs and the number of cases they trained on; ``grouped=False``
    trains the seeds one by one."""
    from bench.replica_train import run_seeds

    cfg = final_config(cfg, tuned_epochs)
    prepared = bench_data.build(cfg.dataset, cfg.data_dir)
    tags = {**(tags or {}), TUNED_EPOCHS_TAG: str(tuned_epochs),
            TRAIN_CASES_TAG: str(len(prepared.train) + len(prepared.val))}
    if grouped:
        return run_seeds(cfg, list(seeds), tags=tags, fit=fit_all)
    out: list[RunResult] = []
    for seed in seeds:
        out += run_seeds(cfg, [seed], tags=tags, fit=fit_all)
    return out
