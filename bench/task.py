"""One LightningModule for every dataset: the dataset's ``DatasetInfo`` decides the task.

Validation and test score the model and the naive baseline (the ``naive`` field of each
batch) with the same torchmetrics objects, so the baseline in every run's record is
computed on exactly the batches the model saw.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn

from bench.data.base import DatasetInfo
from bench.models.baselines import Naive

LOSS_MODULES = {"cross_entropy": nn.CrossEntropyLoss, "mae": nn.L1Loss, "mse": nn.MSELoss}


def chance_loss(info: DatasetInfo, loss: str, train_targets: torch.Tensor) -> float:
    """The training loss of a model that learned nothing from the inputs, in the loss's units.

    Cross-entropy: ln K, the loss of the uniform prediction over K classes. MSE and MAE: the
    loss of the best constant prediction on the training targets (their mean for MSE, their
    median for MAE), in the scaled units the loss is computed in; for a forecast it is the
    constant, not the persistence forecast, because persistence already reads the inputs.
    """
    if loss == "cross_entropy":
        if not info.num_classes:
            return math.nan
        return math.log(info.num_classes)
    y = train_targets.detach().double().flatten()
    if not len(y):
        return math.nan
    if loss == "mse":
        return float((y - y.mean()).square().mean())
    return float((y - y.median()).abs().mean())


def fit_check(train_loss: float, chance: float) -> dict[str, float]:
    """The fit metrics a run records: its final training loss, the chance loss and their
    ratio (NaN where either is unknown or the chance loss is 0)."""
    ratio = train_loss / chance if math.isfinite(train_loss) and chance > 0 else math.nan
    return {"fit/train_loss": train_loss, "fit/chance_loss": chance, "fit/loss_ratio": ratio}


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run (or trial) fails."""


def make_metrics(info: DatasetInfo) -> torchmetrics.MetricCollection:
    # validate_args=False: the argument checks run ``torch.unique`` and read the result on
    # the host every batch, a blocking device sync per evaluation step; the inputs here are
    # argmax indices and targets from our own data module, so the checks cannot fail.
    if info.task == "classification":
        return torchmetrics.MetricCollection(
            {"accuracy": torchmetrics.Accuracy(
                task="multiclass", num_classes=info.num_classes, validate_args=False)}
        )
    return torchmetrics.MetricCollection(
        {
            "mae": torchmetrics.MeanAbsoluteError(),
            "rmse": torchmetrics.MeanSquaredError(squared=False),
            "r2": torchmetrics.R2Score(),
        }
    )


def apply_fp32_policy(tf32: bool = False) -> None:
    """One float32 precision for every recurrent kernel in the process.

    cuDNN runs its fused RNN/GRU/LSTM in TF32 by default on Ampere and later, while cuBLAS
    (the hand-written cells' matmuls) defaults to full float32: left alone, ``impl=fused``
    and ``impl=cell`` compute at different precisions. Both follow ``tf32`` here. The legacy
    flags are used on purpose: once the per-operator ``fp32_precision`` API is set, reading
    ``torch.backends.cudnn.allow_tf32`` raises, and torch 2.4-2.8 have only the legacy flags.
    """
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


class BenchTask(pl.LightningModule):
    def __init__(self, model: nn.Module, info: DatasetInfo, loss: str, optim: dict):
        super().__init__()
        self.model, self.info, self.optim = model, info, dict(optim)
        self.loss_fn = LOSS_MODULES[loss]()
        self.is_naive = getattr(model, "is_naive", False)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", make_metrics(info).clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_naive", make_metrics(info).clone(prefix=f"{stage}/naive_"))
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # Non-finite losses are flagged on the device and read once per epoch: reading a
        # device tensor on the host (``if not torch.isfinite(loss)``) waits for the GPU to
        # drain its queue, every step. None until the first step puts it on the device.
        self._nonfinite: torch.Tensor | None = None
        self._nonfinite_step: torch.Tensor | None = None
        # The epoch's training loss, summed on the device and logged once, at the epoch's
        # last batch: Lightning's ``self.log`` costs more per call than a small model's step.
        self._loss_sum: torch.Tensor | None = None
        self._loss_count: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(self.model, Naive):
            return self.model.predict(batch["naive"])
        out = self.model(batch["x"], batch.get("lengths"))
        return out.squeeze(-1) if self.info.task == "regression" else out

    def _preds(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(-1) if self.info.task == "classification" else out

    def _naive_preds(self, batch) -> torch.Tensor:
        return batch["naive"].long() if self.info.task == "classification" else batch["naive"]

    def on_train_epoch_start(self):
        self._nonfinite = self._nonfinite_step = None
        self._loss_sum = self._loss_count = None

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self(batch), batch["y"])
        self._flag_nonfinite(loss.detach(), batch_idx)
        self._add_loss(loss.detach(), len(batch["y"]))
        if self.trainer.is_last_batch or batch_idx + 1 >= self.trainer.num_training_batches:
            # the batch-weighted mean, as ``self.log(..., on_epoch=True)`` at every step makes it
            self.log("train/loss", self._loss_sum / self._loss_count, on_step=False,
                     on_epoch=True, prog_bar=True, batch_size=1)
        return loss

    def _add_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """Lightning's accumulation of an epoch mean, step for step (the same float32 sums)."""
        if loss.dtype not in (torch.float32, torch.float64):
            loss = loss.to(torch.get_default_dtype())
        if self._loss_sum is None or self._loss_count is None:
            self._loss_sum = torch.tensor(0.0, dtype=torch.get_default_dtype(),
                                          device=loss.device)
            self._loss_count = torch.tensor(0, device=loss.device)
        self._loss_sum = self._loss_sum + loss * batch_size
        self._loss_count = self._loss_count + batch_size

    def _flag_nonfinite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Remembers, on the device, whether and where the loss first stopped being finite."""
        bad = ~torch.isfinite(loss)
        if self._nonfinite is None or self._nonfinite_step is None:
            self._nonfinite = bad.clone()
            self._nonfinite_step = torch.where(bad, batch_idx, -1)
            return
        first = bad & ~self._nonfinite
        self._nonfinite_step = torch.where(first, batch_idx, self._nonfinite_step)
        self._nonfinite |= bad

    def _raise_if_nonfinite(self) -> None:
        """The one host read of the flag: before the epoch's validation and at its end.

        Before validation so that neither the checkpoint nor a pruner ever scores an epoch
        whose weights a NaN has reached; a run that goes NaN trains on to the end of that
        epoch, which is the price of not syncing every step.
        """
        if self._nonfinite is not None and bool(self._nonfinite):
            step = -1 if self._nonfinite_step is None else int(self._nonfinite_step)
            self._nonfinite = self._nonfinite_step = None
            raise NonFiniteLoss(
                f"training loss became NaN or infinite at epoch {self.current_epoch}, "
                f"batch {step}"
            )

    def on_validation_epoch_start(self):
        if self.trainer.state.fn == "fit":
            self._raise_if_nonfinite()

    def on_train_epoch_end(self):
        self._raise_if_nonfinite()

    def _eval_step(self, batch, stage: str):
        out = self(batch)
        self.log(f"{stage}/loss", self.loss_fn(out, batch["y"]), batch_size=len(batch["y"]))
        preds = self._preds(out)
        getattr(self, f"{stage}_metrics").update(preds, batch["y"])
        getattr(self, f"{stage}_naive").update(self._naive_preds(batch), batch["y"])
        return preds

    def _eval_epoch_end(self, stage: str):
        values = {}
        for coll in (getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_naive")):
            values.update({k: v.float() for k, v in coll.compute().items()})
            coll.reset()
        if self.info.task == "regression":
            scale = abs(self.info.target_scale)
            for k in [k for k in values if k.endswith(("mae", "rmse"))]:
                values[f"{k}_units"] = values[k] * scale
            if self.info.mase_scale:
                for k in [k for k in values if k.endswith("mae")]:
                    values[k[: -len("mae")] + "mase"] = values[k] / self.info.mase_scale
        shown = f"val/{self.info.metric}"  # the validation metric goes on the progress bar
        self.log_dict({k: v for k, v in values.items() if k != shown})
        if shown in values:
            self.log(shown, values[shown], prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_start(self):
        self.test_outputs = []

    def test_step(self, batch, batch_idx):
        # Kept on the device for the prediction plots and moved to the host once, at the
        # epoch's end: a ``.cpu()`` per batch would wait for the GPU every batch.
        preds = self._eval_step(batch, "test")
        self.test_outputs.append(
            (preds.detach(), batch["y"].detach(), self._naive_preds(batch).detach())
        )

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")
        if self.test_outputs:
            self.test_outputs = [tuple(
                torch.cat(t).cpu() for t in zip(*self.test_outputs, strict=True)
            )]

    def configure_optimizers(self):
        optimizer = make_optimizer(self.model.parameters(), self.optim)
        schedule = make_schedule(optimizer, self.optim, int(self.trainer.max_epochs or 1))
        if schedule is None:
            return optimizer
        scheduler = {"scheduler": schedule, "interval": "epoch", "frequency": 1}
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler["monitor"] = "train/loss"
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def make_optimizer(params, optim: dict) -> torch.optim.Optimizer:
    name, lr = optim["name"], float(optim["lr"])
    wd = float(optim.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        # Keras's RMSprop defaults (rho 0.9, eps 1e-7), which the reference runs used.
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=float(optim.get("momentum", 0.0)),
                           weight_decay=wd)


def make_schedule(optimizer: torch.optim.Optimizer, optim: dict, max_epochs: int):
    """The learning-rate schedule ``optim.schedule`` names, stepped once per epoch; None for
    ``none`` (a constant rate, as before schedules existed).

    ``cosine`` anneals from ``optim.lr`` to ``optim.min_lr`` over ``optim.schedule_epochs``
    (default: the epoch budget). A final run that stops at the tuned epoch spans the trials'
    budget, so it sees the very rates the folds saw up to that epoch.
    ``plateau`` halves the rate (``optim.plateau_factor``) once the epoch's training loss
    has not improved for ``optim.plateau_patience`` epochs, down to ``optim.min_lr``: the rule
    of the archive's deep learners (ResNet, InceptionTime: factor 0.5, patience 50, minimum
    1e-4), which read the training loss because a few dozen validation cases cannot decide.
    The replicas step the very same scheduler objects, so both paths share the rates.
    """
    kind = str(optim.get("schedule", "none") or "none")
    lr = float(optim["lr"])
    min_lr = min(float(optim.get("min_lr", 0.0)), lr)
    if kind == "none":
        return None
    if kind == "cosine":
        span = optim.get("schedule_epochs") or max_epochs
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, int(span)), eta_min=min_lr)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(optim.get("plateau_factor", 0.5)),
            patience=int(optim.get("plateau_patience", 50)), min_lr=min_lr)
    raise ValueError(f"optim.schedule: {kind!r}; expected one of none, cosine, plateau")
