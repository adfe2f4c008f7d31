"""Lightning glue: batches of indices in, vectorised batches out.

The DataLoader gets ``batch_size=None`` and a sampler that yields whole index
tensors, so one ``split[idx]`` call gathers a batch. When ``on_device`` is on
and the trainer runs on a GPU, the splits are moved to the device once in
``setup`` and the indices are drawn there too: no host-to-device copy per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from bench.data.base import Prepared, Split


class IndexBatchSampler:
    """Yields ``(B,)`` long tensors of sample indices; reshuffles per epoch, reproducibly."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.device, self.drop_last = seed, torch.device(device), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).to(self.device)
        else:
            order = torch.arange(self.n, device=self.device)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


def _identity(batch):
    return batch


class BenchDataModule(pl.LightningDataModule):
    """Wraps a loader's :class:`Prepared` splits for Lightning."""

    def __init__(
        self,
        build: Callable[[], Prepared],
        batch_size: int,
        eval_batch_size: int | None = None,
        seed: int = 0,
        on_device: bool = True,
        drop_last: bool = False,
    ):
        super().__init__()
        self._build = build
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed, self.on_device, self.drop_last = seed, on_device, drop_last
        self.prepared: Prepared | None = None
        self._device = torch.device("cpu")

    def prepare(self) -> Prepared:
        """Loads (and caches) the data; safe to call before the trainer exists."""
        if self.prepared is None:
            self.prepared = self._build()
        return self.prepared

    @property
    def info(self):
        return self.prepare().info

    def train_batches(self) -> int:
        """Batches in one training epoch (the last one may be short unless dropped)."""
        n = len(self.prepare().train)
        return max(1, n // self.batch_size if self.drop_last else -(-n // self.batch_size))

    def setup(self, stage: str | None = None) -> None:
        p = self.prepare()
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if self.on_device and device.type != "cpu" and device != self._device:
            memo: dict = {}
            self.prepared = Prepared(
                p.info, p.train.to(device, memo), p.val.to(device, memo), p.test.to(device, memo)
            )
            self._device = device

    def _loader(self, split: Split, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        sampler = IndexBatchSampler(
            len(split), batch_size, shuffle, self.seed, self._device, drop_last
        )
        # A map-style dataset is any object with __getitem__ and __len__, as a split is; torch's
        # stub asks for a subclass of its Dataset.
        return DataLoader(split, batch_size=None, sampler=sampler,  # type: ignore[arg-type]
                          collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.prepare().train, self.batch_size, True, self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.prepare().val, self.eval_batch_size, False, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.prepare().test, self.eval_batch_size, False, False)
