"""One run, end to end: config -> data -> model -> Lightning fit/test -> MLflow record.

``run`` is the single function that plain runs, sweep trials and study runs all call, so
every number in a report was produced by the same code path. The MLflow run is opened
before anything can fail and closed in every outcome (FINISHED, FAILED, KILLED, or
FINISHED with a ``pruned`` tag), so nothing logged before a failure is lost.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import DictConfig, OmegaConf

from bench import data, plots, tracking
from bench.config import validate
from bench.data.module import BenchDataModule
from bench.models import arch_name, build_model, n_params
from bench.task import BenchTask, NonFiniteLoss, apply_fp32_policy

__all__ = ["NonFiniteLoss", "RunResult", "run"]

# Batches are gathered by one vectorised index in the main process, on purpose.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@dataclass
class RunResult:
    run_id: str
    status: str
    objective: float
    direction: str
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    epochs_trained: int = 0
    n_params: int = 0
    units: str | None = None  # the target's units, for the test metrics ending in _units
    experiment_id: str | None = None
    wall_time_s: float = 0.0
    checkpoint: str | None = None  # the best epoch's weights, which the test metrics used


class EpochHistory(Callback):
    """Keeps per-epoch values for the learning-curve figure and times each epoch."""

    def __init__(self):
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.epochs_trained = 0
        self._t0 = 0.0
        self.epoch_times: list[float] = []

    def _keep(self, trainer, prefix: str):
        for k, v in trainer.callback_metrics.items():
            if k.startswith(prefix) and torch.is_tensor(v) and v.numel() == 1:
                self.history.setdefault(k, []).append((trainer.current_epoch, float(v)))

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # The epoch's validation has run by now (callbacks' on_validation_epoch_end fires
        # before the module logs its epoch metrics, so reading them there lags one epoch).
        self._keep(trainer, "train/")
        self._keep(trainer, "val/")
        self.epochs_trained += 1
        self.epoch_times.append(time.perf_counter() - self._t0)
        pl_module.log("time/epoch_s", self.epoch_times[-1])


class BestCheckpoint(ModelCheckpoint):
    """Keeps the best epoch's weights; a tie goes to the later epoch.

    On the small validation splits of the archive datasets (10 GunPoint cases) the metric
    plateaus, often at 100%, for many epochs: the first epoch to touch the plateau is the
    least trained of them, and Lightning's strict comparison would keep it.
    """

    def check_monitor_top_k(self, trainer, current=None) -> bool:
        if current is None or self.save_top_k != 1 or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        op = {"min": torch.le, "max": torch.ge}[self.mode]
        best = self.best_k_models[self.kth_best_model_path]
        return trainer.strategy.reduce_boolean_decision(bool(op(current, best)))


def _output_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        pass
    return Path(tempfile.mkdtemp(prefix="bench-run-"))


def _trainer(cfg: DictConfig, logger, callbacks, out_dir: Path) -> pl.Trainer:
    t = cfg.trainer
    if t.enable_progress_bar:
        from bench.console import progress_bar

        callbacks = [*callbacks, progress_bar()]
    return pl.Trainer(
        max_epochs=t.max_epochs,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        limit_test_batches=t.limit_test_batches,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        deterministic=t.deterministic,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=t.num_sanity_val_steps,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
    )


def _model_summary(task: BenchTask, model: torch.nn.Module) -> str:
    """Lightning's summary, the module tree and every parameter tensor's shape.

    The shapes are there because the tree alone shows a hand-written cell's parameter
    holder as an empty ``Module()``: its weights are plain parameters, not submodules.
    """
    shapes = "\n".join(
        f"{name:<40} {tuple(p.shape)!s:<16} {p.numel():>10,}"
        for name, p in model.named_parameters()
    )
    return f"{ModelSummary(task, max_depth=3)}\n\n{model}\n\nparameters:\n{shapes}\n"


def _scalar_metrics(metrics, prefix: str) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items()
        if k.startswith(prefix) and (not torch.is_tensor(v) or v.numel() == 1)
    }


def _log_figures(client, run_id, task: BenchTask, info, history, metric):
    import matplotlib.pyplot as plt

    if history.history:
        fig = plots.learning_curves(history.history, metric)
        client.log_figure(run_id, fig, "plots/learning_curves.png")
        plt.close(fig)
    if task.test_outputs:
        preds, y, naive = (torch.cat(t) for t in zip(*task.test_outputs, strict=True))
        if info.task == "regression":
            fig = plots.predictions_vs_actual(info, preds.float(), y.float(), naive.float())
            client.log_figure(run_id, fig, "plots/predictions_vs_actual.png")
        else:
            fig = plots.confusion_matrix(info, preds, y)
            client.log_figure(run_id, fig, "plots/confusion_matrix.png")
        plt.close(fig)


@dataclass
class _Built:
    """What the steps of a run hand each other; the cleanup reads what was reached."""

    info: object = None
    task: BenchTask | None = None


def run(
    cfg: DictConfig,
    *,
    callbacks: tuple | list = (),
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> RunResult:
    """Opens the MLflow run, then: data -> model -> fit and test -> record; closes the run
    in every outcome. ``callbacks``, ``tags`` and ``parent_run_id`` are a sweep trial's."""
    validate(cfg)
    uri, client, exp_id = tracking.open_experiment(
        cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    run_id = _start_run(cfg, client, exp_id, tags, parent_run_id)
    metric, direction = cfg.dataset.metric, cfg.dataset.direction
    result = RunResult(run_id, "RUNNING", math.nan, direction, experiment_id=exp_id)
    start = time.perf_counter()
    history = EpochHistory()
    built = _Built()
    try:
        dm = _data(cfg, client, run_id, result, built)
        _model(cfg, client, run_id, result, built)
        trainer = _fit_and_test(cfg, uri, run_id, dm, built.task, history, callbacks, result,
                                client)
        _record(client, run_id, trainer, built, history, result, metric)
        result.status = "FINISHED"
        return result
    except BaseException as exc:
        result.status = _failure_status(exc)
        _record_failure(client, run_id, exc, result.status)
        raise
    finally:
        result.wall_time_s = time.perf_counter() - start
        _close(client, run_id, built, history, result, metric)


def _start_run(cfg: DictConfig, client, exp_id: str, tags, parent_run_id) -> str:
    run_tags = {
        **tracking.standard_tags(cfg, arch_name(cfg.model)),
        tracking.TAGS["seed"]: cfg.seed,
        tracking.TAGS["hardware"]: tracking.hardware(),
        tracking.TAGS["command"]: tracking.command_line(),
        **(tags or {}),
    }
    run_name = cfg.get("run_name") or f"{cfg.dataset.name}-{arch_name(cfg.model)}-seed{cfg.seed}"
    return tracking.start_run(client, exp_id, run_name, run_tags, parent_run_id)


def _data(cfg: DictConfig, client, run_id: str, result: RunResult,
          built: _Built) -> BenchDataModule:
    """The config as params and artifact, then the data module, prepared (its facts tagged)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracking.log_params(client, run_id, tracking.run_params(resolved, tokens=False))
    client.log_text(run_id, tracking.mask_secrets(OmegaConf.to_yaml(resolved)), "config.yaml")

    dm = BenchDataModule(
        lambda: data.build(cfg.dataset, cfg.data_dir),
        batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
        seed=cfg.seed, on_device=cfg.trainer.on_device,
    )
    info = built.info = dm.prepare().info
    result.units = info.units
    tracking.log_tags(client, run_id, {tracking.TAGS["units"]: info.units or None,
                                       tracking.TAGS["task"]: info.task})
    if info.vocab_size:
        tracking.log_params(client, run_id, {
            k: v for k, v in tracking.run_params(resolved, tokens=True).items()
            if k.startswith("model.embedding")})
    return dm


def _model(cfg: DictConfig, client, run_id: str, result: RunResult, built: _Built) -> None:
    """The seeded model and its task; size and summary recorded."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.model, built.info, cfg.data_dir)
    result.n_params = n_params(model)
    tracking.log_params(client, run_id, {
        "n_params": result.n_params,
        "layer_sizes": getattr(model, "layer_sizes", None),
    })
    built.task = BenchTask(model, built.info, cfg.dataset.loss,
                           OmegaConf.to_container(cfg.optim, resolve=True))
    client.log_text(run_id, _model_summary(built.task, model), "model_summary.txt")


def _fit_and_test(cfg: DictConfig, uri: str, run_id: str, dm: BenchDataModule, task: BenchTask,
                  history: EpochHistory, callbacks, result: RunResult, client) -> pl.Trainer:
    """Fits (the naive baseline only validates), then tests the best epoch's weights."""
    metric, direction = cfg.dataset.metric, cfg.dataset.direction
    out_dir = _output_dir()
    monitor, mode = f"val/{metric}", ("max" if direction == "maximize" else "min")
    ckpt = BestCheckpoint(
        dirpath=out_dir / "checkpoints", filename=f"best-{run_id[:8]}", monitor=monitor,
        mode=mode, save_top_k=1, save_weights_only=True,
    )
    cbs: list = [history, ckpt]
    if cfg.trainer.early_stopping_patience:
        cbs.append(EarlyStopping(monitor, patience=cfg.trainer.early_stopping_patience, mode=mode))
    cbs += list(callbacks)
    logger = MLFlowLogger(
        experiment_name=cfg.tracking.experiment, tracking_uri=uri, run_id=run_id
    )
    apply_fp32_policy(bool(cfg.trainer.get("tf32", False)))
    trainer = _trainer(cfg, logger, cbs, out_dir)

    if task.is_naive:
        val = trainer.validate(task, datamodule=dm, verbose=False)[0]
        result.objective = float(val[monitor])
        trainer.test(task, datamodule=dm, verbose=False)
        result.val_metrics = _scalar_metrics(val, "val/")
    else:
        trainer.fit(task, datamodule=dm)
        if ckpt.best_model_score is not None:
            result.objective = float(ckpt.best_model_score)
        best = ckpt.best_model_path or None
        result.checkpoint = best
        tracking.log_tags(client, run_id, {tracking.TAGS["checkpoint"]: best})
        trainer.test(task, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)
        result.val_metrics = {k: v[-1][1] for k, v in history.history.items()
                              if k.startswith("val/")}
    return trainer


def _record(client, run_id: str, trainer: pl.Trainer, built: _Built, history: EpochHistory,
            result: RunResult, metric: str) -> None:
    """Final metrics (best validation value, test metrics, epochs, timing) and figures."""
    result.epochs_trained = history.epochs_trained
    result.test_metrics = _scalar_metrics(trainer.callback_metrics, "test/")
    final = {"best/val_" + metric: result.objective, "epochs_trained": result.epochs_trained}
    if history.epoch_times:
        final["time/mean_epoch_s"] = sum(history.epoch_times) / len(history.epoch_times)
    tracking.log_metrics(client, run_id, {**final, **result.test_metrics})
    _log_figures(client, run_id, built.task, built.info, history, metric)


def _record_failure(client, run_id: str, exc: BaseException, status: str) -> None:
    if status == "PRUNED":
        tracking.log_tags(client, run_id, {tracking.TAGS["pruned"]: "true"})
    else:
        tracking.log_tags(client, run_id,
                          {tracking.TAGS["error"]: f"{type(exc).__name__}: {exc}"[:4000]})
        client.log_text(run_id, "".join(traceback.format_exception(exc)), "error.txt")


def _close(client, run_id: str, built: _Built, history: EpochHistory, result: RunResult,
           metric: str) -> None:
    """The figures of an unfinished run, its wall time and its final MLflow status."""
    try:
        if built.task is not None and result.status != "FINISHED":
            _log_figures(client, run_id, built.task, built.info, history, metric)
    except Exception:  # a figure must never hide the original error
        pass
    # losing a timing must not hide the run's own outcome
    with contextlib.suppress(Exception):
        tracking.log_metrics(client, run_id, {"time/wall_s": result.wall_time_s})
    mlflow_status = {"FINISHED": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}
    client.set_terminated(run_id, mlflow_status.get(result.status, "FAILED"))


def _failure_status(exc: BaseException) -> str:
    try:
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            return "PRUNED"
    except ImportError:
        pass
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "KILLED"
    return "FAILED"
