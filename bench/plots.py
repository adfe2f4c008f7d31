"""Figures attached to every run: learning curves and a picture of the test predictions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.data.base import DatasetInfo  # noqa: E402


def learning_curves(history: dict[str, list[tuple[int, float]]], metric: str):
    keys: list[str] = [k for k in ("train/loss", "val/loss") if k in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in keys:
        e, v = zip(*history[k], strict=True)
        axes[0].plot(e, v, marker="o", label=k)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    for k in (f"val/{metric}", f"val/naive_{metric}"):
        if k in history:
            e, v = zip(*history[k], strict=True)
            axes[1].plot(e, v, marker="o" if "naive" not in k else None,
                         linestyle="--" if "naive" in k else "-", label=k)
    axes[1].set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def predictions_vs_actual(info: DatasetInfo, preds, y, naive, max_points: int = 500):
    n = min(max_points, len(y))
    to_units = (lambda t: info.to_units(t[:n]).numpy())  # noqa: E731
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.plot(to_units(y), label="actual", color="black", linewidth=1)
    ax.plot(to_units(preds), label="model", linewidth=1)
    ax.plot(to_units(naive), label="naive", linewidth=1, linestyle="--", alpha=0.7)
    unit = f" ({info.units})" if info.units else ""
    ax.set(xlabel="test sample (time order)", ylabel=f"{info.target_name}{unit}",
           title=f"{info.name}: test predictions, first {n} samples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(info: DatasetInfo, preds: torch.Tensor, y: torch.Tensor):
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    if info.num_classes is None:
        raise ValueError(f"{info.name}: a confusion matrix needs the number of classes "
                         "(a classification dataset)")
    cm = multiclass_confusion_matrix(preds, y, num_classes=info.num_classes).numpy()
    names = list(info.class_names) or [str(i) for i in range(info.num_classes)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(names), 0.8 + 0.5 * len(names)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(np.arange(len(names)), names, rotation=45)
    ax.set_yticks(np.arange(len(names)), names)
    ax.set(xlabel="predicted", ylabel="actual", title=f"{info.name}: test confusion matrix")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    return fig
