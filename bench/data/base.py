"""The contract between dataset loaders and the training pipeline.

Every loader returns a :class:`Prepared`: three splits and a :class:`DatasetInfo`.
A split is indexable by a whole batch of indices at once (``split[idx]`` with a
1-D long tensor) so that gathering a batch is one vectorised tensor operation,
never a Python loop per sample, and so that the same code gathers on a GPU when
the split's tensors live there.

A batch is a dict:

* ``x``: float ``(B, T, F)`` for series and images, long ``(B, T)`` for tokens;
* ``y``: long ``(B,)`` class indices, or float ``(B,)`` scaled regression targets;
* ``naive``: the naive baseline's prediction for the same samples (majority
  class, or persistence), so every run scores the baseline with the very same
  metric code and batches as the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

Task = Literal["classification", "regression"]


class ConfigError(ValueError):
    """A bad configuration value or bad input file; the message names the key or file,
    the offending value and what was expected."""


class DataError(ValueError):
    """Bad or missing data; the message names the file, the field and what was expected."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline must know about a dataset to build a model and score it."""

    name: str
    task: Task
    metric: str  # primary metric: accuracy | mae | rmse | r2
    direction: Literal["maximize", "minimize"]
    seq_len: int
    n_features: int  # per-step input size; for token inputs, 1 (the id)
    num_classes: int | None = None
    vocab_size: int | None = None  # set for token inputs: models add an Embedding
    units: str | None = None  # the target's own units, e.g. "degC", "shares"
    target_scale: float = 1.0  # units = scaled * target_scale + target_offset
    target_offset: float = 0.0
    feature_names: tuple[str, ...] = ()
    target_name: str = ""
    class_names: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)

    def to_units(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.target_scale + self.target_offset


class Split(Protocol):
    """A split: ``len(split)`` samples, ``split[idx]`` a batch dict for a long index tensor."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device) -> Split: ...


@dataclass
class Prepared:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split


class TensorSplit:
    """A split held as whole tensors (MNIST images, IMDB token ids)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, naive: torch.Tensor):
        if not (len(x) == len(y) == len(naive)):
            raise ValueError(f"x, y and naive lengths differ: {len(x)}, {len(y)}, {len(naive)}")
        self.x, self.y, self.naive = x, y, naive

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": self.x[idx], "y": self.y[idx], "naive": self.naive[idx]}

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device), self.naive.to(device))


class WindowSplit:
    """Windows over one shared series, gathered lazily.

    Holds the whole scaled series once (``features`` ``(N, F)``, ``target`` ``(N,)``)
    and, per sample, only its anchor row. Sample ``a`` has the inputs
    ``features[a - lookback : a : step]`` (``lookback // step`` steps, the last one at
    ``a - step``), the target ``target[a + delay]`` and the persistence forecast
    ``target[a - step]`` (the target's value at the last observed step). So the Jena
    train split costs 420,551 x 14 floats, not 200,000 x 240 x 14.
    """

    def __init__(
        self,
        features: torch.Tensor,
        target: torch.Tensor,
        anchors: torch.Tensor,
        lookback: int,
        step: int,
        delay: int,
    ):
        if lookback % step:
            raise ValueError(f"lookback ({lookback}) must be a multiple of step ({step})")
        self.features, self.target, self.anchors = features, target, anchors.long()
        self.lookback, self.step, self.delay = lookback, step, delay
        self.offsets = torch.arange(-lookback, 0, step, device=features.device)

    @property
    def seq_len(self) -> int:
        return len(self.offsets)

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.anchors[idx]
        rows = a[:, None] + self.offsets[None, :]
        return {
            "x": self.features[rows],
            "y": self.target[a + self.delay],
            "naive": self.target[a - self.step],
        }

    def to(self, device: torch.device) -> WindowSplit:
        return WindowSplit(
            self.features.to(device),
            self.target.to(device),
            self.anchors.to(device),
            self.lookback,
            self.step,
            self.delay,
        )
