"""Generated tasks for tests and smoke runs: no files, instant, still learnable.

``task: classification``: is the running sum of a noise sequence positive at the end?
``task: regression``: a noisy sine series forecast ``delay`` steps ahead, windowed
exactly as the real series datasets are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data.base import ConfigError, DatasetInfo, Prepared, TensorSplit, WindowSplit


def _classification(cfg, g: torch.Generator) -> Prepared:
    n, t, f = cfg.n_samples, cfg.seq_len, cfg.n_features
    x = torch.randn(n, t, f, generator=g)
    y = (x[..., 0].sum(1) > 0).long()
    n_tr, n_va = int(n * 0.6), int(n * 0.2)
    majority = int(y[:n_tr].float().mean() >= 0.5)
    naive = torch.full_like(y, majority)
    parts = [slice(0, n_tr), slice(n_tr, n_tr + n_va), slice(n_tr + n_va, n)]
    splits = [TensorSplit(x[s], y[s], naive[s]) for s in parts]
    info = DatasetInfo(
        name=cfg.name, task="classification", metric="accuracy", direction="maximize",
        seq_len=t, n_features=f, num_classes=2, class_names=("neg", "pos"),
        feature_names=tuple(f"f{i}" for i in range(f)), target_name="sign",
    )
    return Prepared(info, *splits)


def _regression(cfg, g: torch.Generator) -> Prepared:
    n, f = cfg.n_samples, cfg.n_features
    time = torch.arange(n, dtype=torch.float32)
    base = torch.sin(2 * torch.pi * time / cfg.period)
    feats = torch.stack([base] + [torch.randn(n, generator=g) * 0.3 for _ in range(f - 1)], 1)
    feats[:, 0] += torch.randn(n, generator=g) * 0.1
    mean, std = feats[: int(n * 0.6)].mean(0), feats[: int(n * 0.6)].std(0)
    feats = (feats - mean) / std
    lookback, step, delay = cfg.seq_len * cfg.step, cfg.step, cfg.delay
    bounds = [0, int(n * 0.6), int(n * 0.8), n]
    splits, target = [], feats[:, 0].clone()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi - delay <= lo + lookback:
            raise ConfigError(
                f"dataset.seq_len/delay: a window of {lookback} rows + delay {delay} does not "
                f"fit a split of {hi - lo} rows; expected fewer steps or more n_samples"
            )
        anchors = torch.arange(lo + lookback, hi - delay)
        splits.append(WindowSplit(feats, target, anchors, lookback, step, delay))
    info = DatasetInfo(
        name=cfg.name, task="regression", metric="mae", direction="minimize",
        seq_len=cfg.seq_len, n_features=f, units="units", target_scale=float(std[0]),
        target_offset=float(mean[0]), feature_names=tuple(f"f{i}" for i in range(f)),
        target_name="f0",
    )
    return Prepared(info, *splits)


def _poison(p: Prepared) -> Prepared:
    """NaN training inputs: a run whose loss turns NaN, for failure-handling tests."""
    train = p.train
    if isinstance(train, TensorSplit):
        train = TensorSplit(torch.full_like(train.x, float("nan")), train.y, train.naive)
    elif isinstance(train, WindowSplit):
        feats = train.features.clone()
        feats[:] = float("nan")
        train = WindowSplit(feats, train.target, train.anchors, train.lookback, train.step,
                            train.delay)
    else:
        raise TypeError(f"nan_inputs: cannot poison a {type(train).__name__} training split")
    return Prepared(p.info, train, p.val, p.test)


def build(cfg, data_dir: Path) -> Prepared:
    g = torch.Generator().manual_seed(int(cfg.get("data_seed", 0)))
    if cfg.task in ("classification", "regression"):
        p = _classification(cfg, g) if cfg.task == "classification" else _regression(cfg, g)
        return _poison(p) if cfg.get("nan_inputs", False) else p
    raise ConfigError(
        f"dataset.task: {cfg.task!r} is not supported by the synthetic dataset; "
        "expected one of ['classification', 'regression']"
    )
