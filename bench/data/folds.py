"""Folds of the training cases, for tuning that a handful of validation cases cannot decide.

On the archive's small sets the validation hold-out is 6-10 cases (ArrowHead: 7), so a
tuning objective read from it moves in steps of 12-17 accuracy points and picks the lucky
trial, not the good one. Small training sets are instead tuned on the mean over ``k`` folds
of all their training cases (the loader's ``train`` and ``val`` splits pooled): every case is
validated on once, the test split is never touched.

The folds respect what the rows are:

* classification: stratified, so every fold's validation cases keep the class mix (class
  counts per fold differ by at most one);
* regression on independent cases (the TSER archive): shuffled;
* forecasting windows over one series (a :class:`~bench.data.base.WindowSplit`): rolling
  origin. The windows, in time order, are cut into ``k + 1`` contiguous blocks; fold ``i``
  trains on blocks ``0..i`` and validates on block ``i + 1``, so no fold trains on a target
  later than one it is scored on. Block 0 is never validated on: it is the first fold's
  whole history.

The rule for "small" is :func:`fold_count`: ``auto`` uses ``auto_k`` folds when the training
cases number fewer than ``max_cases`` (default 500: below that the hold-out of a 20% split is
under 100 cases, where one case is at least one accuracy point).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from bench.config import check_fold_setting
from bench.data.base import ConfigError, Split, TensorSplit, WindowSplit

AUTO_K = 5
MAX_CASES = 500


@dataclass(frozen=True)
class Fold:
    """Row indices into the pooled training split."""

    train: np.ndarray
    val: np.ndarray


class _Rows:
    """Any split seen through a list of its rows (the generic case of :func:`subset`)."""

    def __init__(self, split: Split, rows: torch.Tensor):
        self.split, self.rows = split, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.split[self.rows[idx.cpu()]]

    def to(self, device: torch.device, memo: dict | None = None) -> _Rows:
        return _Rows(self.split.to(device, memo), self.rows)


class _Concat:
    """Two splits read as one, the first's rows first (the generic case of :func:`pooled`)."""

    def __init__(self, a: Split, b: Split):
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.cpu()
        first = idx < len(self.a)
        parts = [(first, self.a[idx[first]]), (~first, self.b[idx[~first] - len(self.a)])]
        keys = parts[0][1].keys()
        out = {}
        for key in keys:
            ref = parts[0][1][key] if len(parts[0][1][key]) else parts[1][1][key]
            full = ref.new_empty((len(idx), *ref.shape[1:]))
            for mask, batch in parts:
                full[mask.to(full.device)] = batch[key]
            out[key] = full
        return out

    def to(self, device: torch.device, memo: dict | None = None) -> _Concat:
        return _Concat(self.a.to(device, memo), self.b.to(device, memo))


def _same_windows(a: WindowSplit, b: WindowSplit) -> bool:
    return (type(a) is type(b) and a.features is b.features and a.target is b.target
            and (a.lookback, a.step, a.delay) == (b.lookback, b.step, b.delay)
            and getattr(a, "naive_lag", None) == getattr(b, "naive_lag", None))


def _with_anchors(w: WindowSplit, anchors: torch.Tensor) -> WindowSplit:
    new = copy.copy(w)
    new.anchors = anchors.long()
    new._index()
    return new


def pooled(train: Split, val: Split) -> Split:
    """All training cases as one split: the training rows, then the validation rows.

    Archive cases stay plain tensors and forecasting windows stay windows over the same
    series (kept in time order, since the loaders put validation after training), so a
    batch is still one gather.
    """
    if isinstance(train, TensorSplit) and isinstance(val, TensorSplit) and (
            train.x.shape[1:] == val.x.shape[1:]
            and (train.lengths is None) == (val.lengths is None)):
        lengths = (None if train.lengths is None
                   else torch.cat([train.lengths, val.lengths]))  # type: ignore[list-item]
        return TensorSplit(torch.cat([train.x, val.x]), torch.cat([train.y, val.y]),
                           torch.cat([train.naive, val.naive]), lengths)
    if isinstance(train, WindowSplit) and isinstance(val, WindowSplit) and _same_windows(
            train, val):
        return _with_anchors(train, torch.cat([train.anchors, val.anchors]))
    return _Concat(train, val)


def subset(split: Split, rows: np.ndarray | torch.Tensor) -> Split:
    """The split restricted to ``rows``, in that order."""
    idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    if isinstance(split, TensorSplit):
        lengths = None if split.lengths is None else split.lengths[idx]
        return TensorSplit(split.x[idx], split.y[idx], split.naive[idx], lengths)
    if isinstance(split, WindowSplit):
        return _with_anchors(split, split.anchors[idx])
    return _Rows(split, idx)


def is_time_ordered(split: Split) -> bool:
    """Windows over one series: their order is time, and folds must keep it."""
    return isinstance(split, WindowSplit)


def fold_count(setting, n_cases: int, *, auto_k: int = AUTO_K,
               max_cases: int = MAX_CASES) -> int | None:
    """How many folds a training set of ``n_cases`` is tuned on; None: the hold-out.

    ``setting`` is ``off`` (or false / null), ``auto`` (``auto_k`` folds below ``max_cases``
    training cases) or a fold count of at least 2.
    """
    check_fold_setting("folds.k", setting)
    if setting is None or setting is False or setting == "off":
        return None
    if setting == "auto":
        return auto_k if n_cases < max_cases else None
    return int(setting)


def make_folds(split: Split, k: int, *, task: str, seed: int = 0) -> list[Fold]:
    """``k`` folds of ``split``'s rows: stratified for classification, rolling origin for
    windows over a series, shuffled otherwise (see the module docstring)."""
    n = len(split)
    time_ordered = is_time_ordered(split)
    need = k + 1 if time_ordered else 2 * k
    if k < 2 or n < need:
        raise ConfigError(
            f"folds.k: {k} folds need at least {need} training cases; this training split has "
            f"{n}. Expected fewer folds (folds.k) or folds.k=off")
    if time_ordered:
        blocks = np.array_split(np.arange(n), k + 1)
        return [Fold(np.concatenate(blocks[: i + 1]), blocks[i + 1]) for i in range(k)]
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.int64)
    if task == "classification":
        labels = split[torch.arange(n)]["y"].cpu().numpy()
        offset = 0
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            rows = rows[rng.permutation(len(rows))]
            # continuing the round robin across classes keeps the folds' sizes within one
            fold_of[rows] = (offset + np.arange(len(rows))) % k
            offset += len(rows)
    else:
        fold_of[rng.permutation(n)] = np.arange(n) % k
    return [Fold(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(k)]
