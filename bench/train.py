"""One run, end to end: config -> data -> model -> Lightning fit/test -> MLflow record.

``run`` is the single function that plain runs, sweep trials and study runs all call, so
every number in a report was produced by the same code path. The MLflow run is opened
before anything can fail and closed in every outcome (FINISHED, FAILED, KILLED, or
FINISHED with a ``pruned`` tag), so nothing logged before a failure is lost.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import ModelSummary
from mlflow import MlflowClient
from mlflow.entities import Metric
from omegaconf import DictConfig, OmegaConf

from bench import data, errors, plots, scratch, tracking
from bench.config import plain, validate
from bench.console import quiet_third_party
from bench.data.base import DatasetInfo, split_targets
from bench.data.module import BenchDataModule
from bench.models import arch_name, build_model, n_params
from bench.stores import StoreAddress, mask
from bench.task import (
    BenchTask,
    NonFiniteLoss,
    apply_fp32_policy,
    chance_loss,
    fit_check,
)
from bench.vocab import fit_label

__all__ = ["NonFiniteLoss", "RunResult", "run"]


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
    store: StoreAddress | None = None  # the MLflow store the run is in
    wall_time_s: float = 0.0
    # the best epoch's weights, which the test metrics used; None outside a Hydra job, whose
    # scratch folder (checkpoints included) is removed when the run ends
    checkpoint: str | None = None


class EpochHistory(Callback):
    """Keeps per-epoch values for the learning-curve figure and times each epoch."""

    def __init__(self) -> None:
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


class BestWeights(Checkpoint):
    """Keeps the best epoch's weights in memory; a tie goes to the later epoch.

    A copy of the state dict, on the model's device, replaces a checkpoint file written at
    every improvement: the test restores it, and a run in a Hydra job saves it once, to its
    folder (:func:`_save_best`). Scored when Lightning's ``ModelCheckpoint`` would be, at the
    end of each training epoch, after that epoch's validation, with its rules: the first
    epoch is always kept, a NaN score counts as the worst possible.

    On the small validation splits of the archive datasets (10 GunPoint cases) the metric
    plateaus, often at 100%, for many epochs: the first epoch to touch the plateau is the
    least trained of them, and a strict comparison would keep it.
    """

    def __init__(self, monitor: str, mode: str):
        super().__init__()
        self.monitor, self.mode = monitor, mode
        self.score: torch.Tensor | None = None  # the best score; None until an epoch is kept
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch = self.global_step = -1

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.sanity_checking or trainer.state.fn != "fit"
                or trainer.global_step == self.global_step):
            return
        current = trainer.callback_metrics.get(self.monitor)
        if current is None:  # no validation ran this epoch: nothing to score
            return
        current = torch.as_tensor(current)
        if self.score is not None:
            op = {"min": torch.le, "max": torch.ge}[self.mode]
            if not trainer.strategy.reduce_boolean_decision(bool(op(current, self.score))):
                return
        if torch.isnan(current):
            current = torch.tensor(float("inf" if self.mode == "min" else "-inf"))
        self.score = current.detach().clone()
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.epoch, self.global_step = trainer.current_epoch, trainer.global_step

    def checkpoint(self) -> dict:
        """The kept weights as Lightning's weights-only checkpoint holds them."""
        return {"epoch": self.epoch, "global_step": self.global_step,
                "pytorch-lightning_version": pl.__version__, "state_dict": self.state}


METRIC_FLUSH_S = 15.0  # tracking.flush_s's default


class RunMetrics(Logger):
    """The run's metrics, Lightning's per-epoch ones and the final ones, kept in memory and
    written to MLflow in as few requests as the run allows.

    Lightning's ``MLFlowLogger`` sends one request (an SQLite commit, or an HTTP round trip
    to a server) per logging call, two or three per epoch; on a short run these cost more
    than its training. Here each value keeps the time and step it was logged with, and the
    values go out together: at an epoch's end once the last write is ``tracking.flush_s``
    (:data:`METRIC_FLUSH_S`) old (so a long run's curves still grow in the UI epoch by epoch),
    and when the run ends, in every outcome (:func:`_run`, :func:`_close`).
    """

    def __init__(self, client, run_id: str, flush_every_s: float | None = None):
        super().__init__()
        self.client, self.run_id = client, run_id
        self.flush_every_s = METRIC_FLUSH_S if flush_every_s is None else flush_every_s
        self.pending: list[Metric] = []
        self._written = time.monotonic()

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Nothing: the run's params are its config, which :func:`run` logs."""

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        self.add(metrics, step or 0)
        if time.monotonic() - self._written >= self.flush_every_s:
            self.flush()

    def add(self, metrics, step: int = 0) -> None:
        now = int(time.time() * 1000)
        # the names MLflow accepts, as Lightning's MLFlowLogger makes them
        self.pending += [Metric(re.sub(r"[^a-zA-Z0-9_/. -]+", "", k), float(v), now, step)
                         for k, v in metrics.items() if not isinstance(v, str)]

    def flush(self) -> None:
        """Writes what is pending; kept pending if the store refuses it."""
        if self.pending:
            tracking.log_metric_entities(self.client, self.run_id, self.pending)
            self.pending = []
        self._written = time.monotonic()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its final name, then renames it into place.

    Lightning's own save stages the file in the system temp folder and copies it over the
    final name, so a disk that fills during the copy leaves a truncated file there (over the
    previous best, whose name is reused). A rename within one folder is atomic: the file
    under the final name is always a whole checkpoint, and a failed save leaves the last
    good one as it was.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(buffer.getbuffer())
            os.replace(partial, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            if isinstance(exc, OSError):  # named after the checkpoint, not its partial file
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise


def _output_dir(built: _Built) -> Path:
    """The Hydra job's folder, where the best weights are saved beside the run's log; outside
    a job (sweep trials, study runs) a scratch folder for whatever Lightning writes, removed
    when the run ends: one per trial would otherwise pile up in the temp folder."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        pass
    built.scratch = scratch.make("bench-run")
    return built.scratch


def _trainer(cfg: DictConfig, logger, callbacks, out_dir: Path,
             train_batches: int | None = None) -> pl.Trainer:
    """The Trainer a run fits with. The logging interval is fitted to the epoch: an interval
    longer than the epoch would log no step at all (Lightning warns of it on every small
    dataset), so it is cut to the number of training batches."""
    t = cfg.trainer
    log_every = int(t.log_every_n_steps)
    if train_batches:
        log_every = max(1, min(log_every, train_batches))
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
        log_every_n_steps=log_every,
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


def draws_figures(cfg: DictConfig, test: bool) -> bool:
    """Whether a run draws its PNGs (``tracking.figures``): ``runs``, the default, draws them
    for runs that are tested (a single run, a study's final run) and not for tuning trials,
    whose curves MLflow charts from the logged metrics: a trial on small data spends a seventh
    of its time drawing them (``reports/perf.md`` (e)). ``all`` draws them for trials too."""
    how = cfg.tracking.get("figures", "runs")
    return how == "all" or (how == "runs" and test)


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

    store: StoreAddress
    info: DatasetInfo | None = None
    task: BenchTask | None = None
    client: MlflowClient | None = None
    run_id: str | None = None
    scratch: Path | None = None  # removed when the run ends
    out_dir: Path | None = None
    metrics: RunMetrics | None = None  # what is logged and not yet written
    closed: bool = False  # the run's final MLflow status was written
    figures: bool = True  # draw the run's PNGs (tracking.figures)


def run(
    cfg: DictConfig,
    *,
    callbacks: tuple | list = (),
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    test: bool = True,
) -> RunResult:
    """Opens the MLflow run, then: data -> model -> fit and test -> record; closes the run
    in every outcome. ``callbacks``, ``tags`` and ``parent_run_id`` are a sweep trial's;
    ``test=False`` (a tuning trial) never evaluates the test split: choosing among trials by
    anything computed on it would leak it into the result.

    A full disk, wherever the run hits it, ends it with one
    :class:`~bench.errors.OutOfSpaceError` naming the file, the file system and what became
    of the MLflow run, instead of a chain of tracebacks from each write that failed after
    it. A scratch folder the run made is removed in every outcome.
    """
    quiet_third_party()
    built = _Built(tracking.store_of(cfg))
    try:
        return _run(cfg, built, callbacks, tags, parent_run_id, test)
    except Exception as exc:
        cause = errors.out_of_space_cause(exc)
        if isinstance(exc, errors.OutOfSpaceError) or cause is None:
            raise
        raise _out_of_space(exc, cause, built) from exc
    finally:
        if built.scratch is not None:
            shutil.rmtree(built.scratch, ignore_errors=True)


def _run(cfg: DictConfig, built: _Built, callbacks, tags, parent_run_id,
         test: bool = True) -> RunResult:
    validate(cfg)
    built.figures = draws_figures(cfg, test)
    # the data before the record: a missing or malformed file (or an archive name that does
    # not exist) is refused before an experiment or a FAILED run is created for it
    dm = BenchDataModule(
        lambda: data.build(cfg.dataset, cfg.data_dir),
        batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
        seed=cfg.seed, on_device=cfg.trainer.on_device,
    )
    dm.prepare()
    client, exp_id = tracking.open_experiment(
        built.store, cfg.tracking.experiment, cfg.tracking.artifact_root)
    built.client = client
    run_id = built.run_id = _start_run(cfg, client, exp_id, tags, parent_run_id)
    metrics = built.metrics = RunMetrics(client, run_id, cfg.tracking.get("flush_s"))
    metric, direction = cfg.dataset.metric, cfg.dataset.direction
    result = RunResult(run_id, "RUNNING", math.nan, direction, experiment_id=exp_id,
                       store=built.store)
    start = time.perf_counter()
    history = EpochHistory()
    try:
        info = _data(cfg, client, run_id, result, built, dm)
        task = _model(cfg, client, run_id, result, built, info)
        trainer = _fit_and_test(cfg, run_id, dm, built, task, history, callbacks, result,
                                client, test)
        chance = chance_loss(info, cfg.dataset.loss, split_targets(dm.prepare().train))
        _record(client, run_id, trainer, task, metrics, history, result, metric, chance,
                built.figures)
        metrics.flush()
        result.status = "FINISHED"
        return result
    except BaseException as exc:
        result.status = _failure_status(exc)
        _record_failure(client, run_id, exc, result.status)
        raise
    finally:
        result.wall_time_s = time.perf_counter() - start
        _close(client, run_id, built, history, result, metric)


def _out_of_space(exc: BaseException, cause: BaseException,
                  built: _Built) -> errors.OutOfSpaceError:
    """The one error for a run that hit a full disk (``cause``, in ``exc``'s chain): which
    file, which file system, how to make room, and whether the MLflow run could still be
    closed (FAILED) or shows RUNNING."""
    store = built.store.sqlite_file
    path: str | Path | None
    if errors.is_sqlite_full(cause):
        what, path, fix = "the MLflow store", store, _STORE_FIX
    else:
        what, path, fix = _what_was_written(exc, built, store)
    return errors.OutOfSpaceError(
        f"{errors.out_of_space_text(what, path, fix)}. {_closing_note(built, store)}")


_STORE_FIX = " or choose another store (tracking.uri=...)"
_TMP_FIX = " or point TMPDIR at a disk with room"
_ARTIFACT_FIX = " or send new experiments' artifacts elsewhere (tracking.artifact_root=...)"


def _what_was_written(exc: BaseException, built: _Built,
                      store: Path | None) -> tuple[str, str | Path | None, str]:
    """What the write that failed was to the run, its file, and the setting that moves it.

    MLflow writes an artifact through a bare file descriptor, which names no file; its
    frames in the traceback still say it was an artifact, which goes to the run's folder.
    """
    artifacts = None
    with contextlib.suppress(Exception):
        from mlflow.utils.file_utils import local_file_uri_to_path

        if built.client is not None and built.run_id is not None:
            uri = built.client.get_run(built.run_id).info.artifact_uri
            artifacts = Path(local_file_uri_to_path(uri)) if uri.startswith("file:") else None
    path = errors.written_file(exc)
    if path is None:
        if artifacts is not None and _in_module(exc, "mlflow.store.artifact"):
            return "an MLflow artifact into", artifacts, _ARTIFACT_FIX
        return "a file", None, ""
    p = Path(path)
    if built.out_dir is not None and p.is_relative_to(built.out_dir / "checkpoints"):
        return "the checkpoint", p, (_TMP_FIX if built.scratch is not None else
                                     " or give the run another folder (hydra.run.dir=...)")
    if store is not None and p.parent == store.parent and p.name.startswith(store.name):
        return "the MLflow store", p, _STORE_FIX  # the file itself or its journal
    if artifacts is not None and p.is_relative_to(artifacts):
        return "an MLflow artifact", p, _ARTIFACT_FIX
    if p.is_relative_to(tempfile.gettempdir()):
        return "a temporary file", p, _TMP_FIX
    return "a file", p, ""


def _in_module(exc: BaseException, prefix: str) -> bool:
    """Whether a full-disk error of ``exc``'s chain passed through a module under ``prefix``."""
    for e in errors.exception_chain(exc):
        if not errors.is_full_disk(e):
            continue
        tb = e.__traceback__
        while tb is not None:
            if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(prefix):
                return True
            tb = tb.tb_next
    return False


def _closing_note(built: _Built, store: Path | None) -> str:
    """What became of the MLflow run, read back from its store: a full disk still lets one
    read it, and Lightning's logger may have marked the run before the failure."""
    if built.run_id is None:
        return "No MLflow run was started."
    status = "RUNNING"
    with contextlib.suppress(Exception):
        if built.client is not None:
            status = built.client.get_run(built.run_id).info.status
    if built.closed:
        return f"The MLflow run {built.run_id} was closed {status}."
    where = built.store
    why = f"the store at {store} is full" if store is not None else f"{where} took no update"
    return (f"The MLflow run {built.run_id} could not be closed: {why}; it shows {status} "
            "until it is closed, e.g. once there is room: python -c \"from mlflow import "
            f"MlflowClient; MlflowClient('{where}').set_terminated('{built.run_id}', "
            "'FAILED')\"")


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
          built: _Built, dm: BenchDataModule) -> DatasetInfo:
    """The config as params and artifact, and the prepared data's facts as tags."""
    resolved = plain(cfg)
    tracking.log_params(client, run_id, tracking.run_params(resolved, tokens=False))
    client.log_text(run_id, mask(OmegaConf.to_yaml(resolved)), "config.yaml")

    info = built.info = dm.prepare().info
    result.units = info.units
    tracking.log_tags(client, run_id, {tracking.TAGS["units"]: info.units or None,
                                       tracking.TAGS["task"]: info.task})
    if info.vocab_size:
        tracking.log_params(client, run_id, {
            k: v for k, v in tracking.run_params(resolved, tokens=True).items()
            if k.startswith("model.embedding")})
    return info


def _model(cfg: DictConfig, client, run_id: str, result: RunResult, built: _Built,
           info: DatasetInfo) -> BenchTask:
    """The seeded model and its task; size and summary recorded."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.model, info, cfg.data_dir)
    result.n_params = n_params(model)
    tracking.log_params(client, run_id, {
        "n_params": result.n_params,
        "layer_sizes": getattr(model, "layer_sizes", None),
    })
    task = built.task = BenchTask(model, info, cfg.dataset.loss, plain(cfg.optim))
    client.log_text(run_id, _model_summary(task, model), "model_summary.txt")
    return task


def _fit_and_test(cfg: DictConfig, run_id: str, dm: BenchDataModule, built: _Built,
                  task: BenchTask, history: EpochHistory, callbacks, result: RunResult,
                  client, test: bool = True) -> pl.Trainer:
    """Fits (the naive baseline only validates), then tests the best epoch's weights."""
    metric, direction = cfg.dataset.metric, cfg.dataset.direction
    out_dir = built.out_dir = _output_dir(built)
    monitor, mode = f"val/{metric}", ("max" if direction == "maximize" else "min")
    best = BestWeights(monitor, mode)
    cbs: list = [history, best]
    if cfg.trainer.early_stopping_patience:
        cbs.append(EarlyStopping(monitor, patience=cfg.trainer.early_stopping_patience, mode=mode))
    cbs += list(callbacks)
    apply_fp32_policy(bool(cfg.trainer.get("tf32", False)))
    trainer = _trainer(cfg, built.metrics, cbs, out_dir, dm.train_batches())

    if task.is_naive:
        val = trainer.validate(task, datamodule=dm, verbose=False)[0]
        result.objective = float(val[monitor])
        if test:
            trainer.test(task, datamodule=dm, verbose=False)
        result.val_metrics = _scalar_metrics(val, "val/")
    else:
        trainer.fit(task, datamodule=dm)
        if best.state is not None and best.score is not None:
            result.objective = float(best.score)
            if built.scratch is None:  # a scratch folder's path would soon point at nothing
                result.checkpoint = str(_save_best(best, out_dir, run_id))
                tracking.log_tags(client, run_id, {tracking.TAGS["checkpoint"]: result.checkpoint})
            task.load_state_dict(best.state)
        if test:
            trainer.test(task, datamodule=dm, verbose=False)
        result.val_metrics = {k: v[-1][1] for k, v in history.history.items()
                              if k.startswith("val/")}
    return trainer


def _save_best(best: BestWeights, out_dir: Path, run_id: str) -> Path:
    """The best weights, once, as ``checkpoints/best-<run id>.ckpt`` in the run's folder."""
    path = out_dir / "checkpoints" / f"best-{run_id[:8]}.ckpt"
    version = 0
    while path.exists():  # as Lightning names a second file of the same name
        version += 1
        path = path.with_name(f"best-{run_id[:8]}-v{version}.ckpt")
    AtomicCheckpointIO().save_checkpoint(best.checkpoint(), path)
    return path


def _record(client, run_id: str, trainer: pl.Trainer, task: BenchTask, metrics: RunMetrics,
            history: EpochHistory, result: RunResult, metric: str, chance: float,
            figures: bool = True) -> None:
    """Final metrics (best validation value, test metrics, epochs, timing, the fit check) and
    figures."""
    result.epochs_trained = history.epochs_trained
    result.test_metrics = _scalar_metrics(trainer.callback_metrics, "test/")
    final = {"best/val_" + metric: result.objective, "epochs_trained": result.epochs_trained}
    if history.epoch_times:
        final["time/mean_epoch_s"] = sum(history.epoch_times) / len(history.epoch_times)
    curve = history.history.get("train/loss")
    if curve:  # trained (the naive baseline only validates)
        fit = fit_check(curve[-1][1], chance)
        final.update(fit)
        tracking.log_tags(client, run_id, {tracking.TAGS["fit"]: fit_label(fit["fit/loss_ratio"])})
    metrics.add({**final, **result.test_metrics})
    if figures:
        _log_figures(client, run_id, task, task.info, history, metric)


def _record_failure(client, run_id: str, exc: BaseException, status: str) -> None:
    if status == "PRUNED":
        tracking.log_tags(client, run_id, {tracking.TAGS["pruned"]: "true"})
    else:
        tracking.log_tags(client, run_id, {tracking.TAGS["error"]: _failure_text(exc)[:4000]})
        client.log_text(run_id, mask("".join(traceback.format_exception(exc))),
                        "error.txt")


def _close(client, run_id: str, built: _Built, history: EpochHistory, result: RunResult,
           metric: str) -> None:
    """The figures of an unfinished run, its wall time and its final MLflow status."""
    try:
        if built.task is not None and result.status != "FINISHED" and built.figures:
            _log_figures(client, run_id, built.task, built.task.info, history, metric)
    except Exception:  # a figure must never hide the original error
        pass
    # losing a timing (or, in a run that failed, a metric) must not hide the run's outcome
    with contextlib.suppress(Exception):
        if built.metrics is not None:
            built.metrics.add({"time/wall_s": result.wall_time_s})
            built.metrics.flush()
    mlflow_status = {"FINISHED": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}
    client.set_terminated(run_id, mlflow_status.get(result.status, "FAILED"))
    built.closed = True


def _failure_text(exc: BaseException) -> str:
    """What the error tag says: for a stop, which signal and where, rather than Lightning's
    bare ``SIGTERMException`` or the ``SystemExit: 1`` it turns Ctrl-C into."""
    from bench import interrupt

    if isinstance(exc, KeyboardInterrupt | SystemExit):
        signum = interrupt.received()
        if signum:
            return (f"stopped by {interrupt.signal_name(signum)} at a batch boundary "
                    f"(exit code {interrupt.exit_code()})")
        return f"stopped: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


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
