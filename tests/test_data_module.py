"""The batch machinery: window gathering, index sampling, device placement."""

from __future__ import annotations

import pytest
import torch

from bench.data.base import TensorSplit, WindowSplit
from bench.data.module import BenchDataModule, IndexBatchSampler


@pytest.mark.parametrize(("n", "lookback", "step", "delay"),
                         [(1000, 60, 6, 10), (997, 35, 7, 0), (50, 1, 1, 0), (301, 12, 3, -2)])
def test_window_gather_matches_direct_slicing(n, lookback, step, delay):
    g = torch.Generator().manual_seed(0)
    feats, target = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)
    anchors = torch.arange(lookback, n - max(delay, 0))
    split = WindowSplit(feats, target, anchors, lookback, step, delay)
    idx = torch.randperm(len(split), generator=g)[:37]
    batch = split[idx]
    for j, a in enumerate(anchors[idx].tolist()):
        torch.testing.assert_close(batch["x"][j], feats[a - lookback : a : step])
        assert batch["y"][j] == target[a + delay]
        assert batch["naive"][j] == target[a - step]
    assert batch["x"].shape == (37, lookback // step, 4)


def test_splits_on_one_series_share_its_layout_and_move_once():
    feats, target = torch.randn(500, 3), torch.randn(500)
    a = WindowSplit(feats, target, torch.arange(30, 200), 30, 3, 1)
    b = WindowSplit(feats, target, torch.arange(230, 490), 30, 3, 1)
    assert a._windows.data_ptr() == b._windows.data_ptr()
    memo: dict = {}
    a2, b2 = a.to(torch.device("cpu"), memo), b.to(torch.device("cpu"), memo)
    assert a2.features is b2.features
    torch.testing.assert_close(b2[torch.arange(5)]["x"], b[torch.arange(5)]["x"])


def test_sampler_reshuffles_per_epoch_reproducibly_and_covers_everything():
    s = IndexBatchSampler(103, 10, shuffle=True, seed=5)
    first = torch.cat(list(s))
    assert sorted(first.tolist()) == list(range(103)) and len(s) == 11
    assert torch.equal(first, torch.cat(list(s)))
    s.set_epoch(1)
    assert not torch.equal(first, torch.cat(list(s)))
    assert torch.equal(torch.cat(list(IndexBatchSampler(103, 10, False, 0))), torch.arange(103))
    assert len(IndexBatchSampler(103, 10, True, 0, drop_last=True)) == 10


def test_datamodule_yields_whole_batches():
    split = TensorSplit(torch.randn(50, 4, 2), torch.arange(50) % 3, torch.zeros(50).long())
    from bench.data.base import DatasetInfo, Prepared

    info = DatasetInfo(name="t", task="classification", metric="accuracy",
                       direction="maximize", seq_len=4, n_features=2, num_classes=3)
    dm = BenchDataModule(lambda: Prepared(info, split, split, split), batch_size=16, seed=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [len(b["y"]) for b in batches] == [16, 16, 16, 2]
    assert batches[0]["x"].shape == (16, 4, 2)
    assert sorted(torch.cat([b["y"] for b in dm.val_dataloader()]).tolist()) == sorted(
        split.y.tolist())
