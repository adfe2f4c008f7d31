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
  metric code and batches as the model;
* ``lengths`` (only for sequences of unequal length): long ``(B,)`` true lengths of
  ``x``'s rows, which are zero-padded at the end to the split's longest sequence.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

# Defined in bench.errors with the project's other known errors; re-exported here, where
# the loaders have always imported them from.
from bench.errors import ConfigError as ConfigError
from bench.errors import DataError as DataError

Task = Literal["classification", "regression"]


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
    vocabulary: tuple[str, ...] = ()  # token inputs: id -> word ('' for padding/unknown)
    units: str | None = None  # the target's own units, e.g. "degC", "shares"
    target_scale: float = 1.0  # units = scaled * target_scale + target_offset
    target_offset: float = 0.0
    feature_names: tuple[str, ...] = ()
    target_name: str = ""
    class_names: tuple[str, ...] = ()
    # forecasting: the in-sample naive forecast's MAE on the training rows (scaled units);
    # when set, runs also report MASE = MAE / mase_scale
    mase_scale: float | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def to_units(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.target_scale + self.target_offset


class Split(Protocol):
    """A split: ``len(split)`` samples, ``split[idx]`` a batch dict for a long index tensor."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device, memo: dict | None = None) -> Split: ...


@dataclass
class Prepared:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split


@contextlib.contextmanager
def _gather_threads(t: torch.Tensor):
    """Gathers on the CPU with one intra-op thread.

    A batch gather is a few MB of copying; splitting it over torch's thread pool costs
    more in hand-offs than it saves (measured 0.18 ms on one thread vs 7.9 ms on two, on
    a 2-core machine; see reports/perf.md). Switching the count back and forth is cheap,
    and the model's own ops keep every thread.
    """
    if t.device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _move(t: torch.Tensor, device: torch.device, memo: dict | None) -> torch.Tensor:
    """Moves a tensor once even when several splits share it (one series, three splits)."""
    if memo is None:
        return t.to(device)
    if id(t) not in memo:
        memo[id(t)] = t.to(device)
    return memo[id(t)]


class TensorSplit:
    """A split held as whole tensors (MNIST images, IMDB token ids, archive series).

    ``lengths`` is set only when the sequences differ in length (end-padded ``x``).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, naive: torch.Tensor,
                 lengths: torch.Tensor | None = None):
        if not (len(x) == len(y) == len(naive)):
            raise ValueError(f"x, y and naive lengths differ: {len(x)}, {len(y)}, {len(naive)}")
        if lengths is not None and len(lengths) != len(x):
            raise ValueError(f"lengths has {len(lengths)} entries for {len(x)} samples")
        self.x, self.y, self.naive, self.lengths = x, y, naive, lengths

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        with _gather_threads(self.x):
            batch = {"x": self.x[idx], "y": self.y[idx], "naive": self.naive[idx]}
            if self.lengths is not None:
                batch["lengths"] = self.lengths[idx]
            return batch

    def to(self, device: torch.device, memo: dict | None = None) -> TensorSplit:
        lengths = None if self.lengths is None else _move(self.lengths, device, memo)
        x, y, naive = (_move(t, device, memo) for t in (self.x, self.y, self.naive))
        return TensorSplit(x, y, naive, lengths=lengths)


def split_targets(split: Split, chunk: int = 65536) -> torch.Tensor:
    """Every target of a split, without gathering its inputs where the split holds the
    targets apart (a window split's inputs are many times its targets)."""
    if isinstance(split, TensorSplit):
        return split.y
    if isinstance(split, WindowSplit):
        return split.target[split.anchors + split.delay]
    n = len(split)
    return torch.cat([split[torch.arange(i, min(i + chunk, n))]["y"]
                      for i in range(0, n, chunk)])


def phase_layout(features: torch.Tensor, step: int) -> tuple[torch.Tensor, int]:
    """The series regrouped by row phase modulo ``step``, so every window is one block.

    A window reads rows ``s, s + step, ..., s + (T-1) step``: all of one phase ``s % step``.
    Stored phase by phase (rows 0, step, 2 step, ... then 1, 1 + step, ...), the window is
    ``T`` consecutive rows, and a batch is gathered as ``B`` contiguous blocks through a
    strided view, which is several times faster than indexing ``B x T`` scattered rows.
    Costs one extra copy of the series, shared by every split built on it (cached on the
    tensor itself).
    """
    cache = features.__dict__.setdefault("_bench_phase_layout", {})
    if step not in cache:
        n, f = features.shape
        m = -(-n // step)
        padded = features.new_zeros(m * step, f)
        padded[:n] = features
        cache[step] = (padded.view(m, step, f).transpose(0, 1).reshape(step * m, f), m)
    return cache[step]


class WindowSplit:
    """Windows over one shared series, gathered lazily.

    Holds the whole scaled series once (``features`` ``(N, F)``, ``target`` ``(N,)``)
    and, per sample, only its anchor row. Sample ``a`` has the inputs
    ``features[a - lookback : a : step]`` (``lookback // step`` steps, the last one at
    ``a - step``), the target ``target[a + delay]`` and the persistence forecast
    ``target[a - step]`` (the target's value at the last observed step). So the Jena
    train split costs 420,551 x 14 floats (twice: see ``phase_layout``), not
    200,000 x 240 x 14.
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
        self._index()

    def _index(self) -> None:
        """Per-sample start rows in the phase layout, and the strided window view."""
        seq_len = self.lookback // self.step
        flat, m = phase_layout(self.features, self.step)
        first = self.anchors - self.lookback
        self._starts = (first % self.step) * m + first // self.step
        f = flat.shape[1]
        self._windows = flat.as_strided((flat.shape[0] - seq_len + 1, seq_len, f), (f, f, 1))

    @property
    def seq_len(self) -> int:
        return self.lookback // self.step

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.anchors[idx]
        with _gather_threads(self.features):
            return {
                "x": self._windows.index_select(0, self._starts[idx]),
                "y": self.target[a + self.delay],
                "naive": self.target[a - self.step],
            }

    def to(self, device: torch.device, memo: dict | None = None) -> WindowSplit:
        new = copy.copy(self)
        new.features = _move(self.features, device, memo)
        new.target = _move(self.target, device, memo)
        new.anchors = self.anchors.to(device)
        new._index()
        return new
