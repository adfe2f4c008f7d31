"""One LightningModule for every dataset: the dataset's ``DatasetInfo`` decides the task.

Validation and test score the model and the naive baseline (the ``naive`` field of each
batch) with the same torchmetrics objects, so the baseline in every run's record is
computed on exactly the batches the model saw.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn

from bench.data.base import DatasetInfo

LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mae": nn.L1Loss, "mse": nn.MSELoss}
OPTIMIZERS = ("adam", "rmsprop", "sgd")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run (or trial) fails."""


def make_metrics(info: DatasetInfo) -> torchmetrics.MetricCollection:
    if info.task == "classification":
        return torchmetrics.MetricCollection(
            {"accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=info.num_classes)}
        )
    return torchmetrics.MetricCollection(
        {
            "mae": torchmetrics.MeanAbsoluteError(),
            "rmse": torchmetrics.MeanSquaredError(squared=False),
            "r2": torchmetrics.R2Score(),
        }
    )


class BenchTask(pl.LightningModule):
    def __init__(self, model: nn.Module, info: DatasetInfo, loss: str, optim: dict):
        super().__init__()
        self.model, self.info, self.optim = model, info, dict(optim)
        self.loss_fn = LOSSES[loss]()
        self.is_naive = getattr(model, "is_naive", False)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", make_metrics(info).clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_naive", make_metrics(info).clone(prefix=f"{stage}/naive_"))
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.is_naive:
            return self.model.predict(batch["naive"])
        out = self.model(batch["x"], batch.get("lengths"))
        return out.squeeze(-1) if self.info.task == "regression" else out

    def _preds(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(-1) if self.info.task == "classification" else out

    def _naive_preds(self, batch) -> torch.Tensor:
        return batch["naive"].long() if self.info.task == "classification" else batch["naive"]

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self(batch), batch["y"])
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}"
            )
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["y"]))
        return loss

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
        self.log_dict(values)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_start(self):
        self.test_outputs = []

    def test_step(self, batch, batch_idx):
        preds = self._eval_step(batch, "test")
        self.test_outputs.append(
            (preds.detach().cpu(), batch["y"].detach().cpu(), self._naive_preds(batch).cpu())
        )

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        name, lr = self.optim["name"], float(self.optim["lr"])
        wd = float(self.optim.get("weight_decay", 0.0))
        params = self.model.parameters()
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        if name == "rmsprop":
            # Keras's RMSprop defaults (rho 0.9, eps 1e-7), which the reference runs used.
            return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, weight_decay=wd)
        return torch.optim.SGD(
            params, lr=lr, momentum=float(self.optim.get("momentum", 0.0)), weight_decay=wd
        )
