"""MNIST as sequences: each image is 28 time steps (rows) of 28 features (pixels).

The textbook validates on the test set; here the validation split is held out of the
60,000 training images (seeded), and the test set is only touched at the end.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from bench.data.base import ConfigError, DataError, DatasetInfo, Prepared, TensorSplit
from bench.data.download import Located, load_verified, sources_from_cfg

FILES = ("train_images", "train_labels", "test_images", "test_labels")
NORMALIZE = ("center", "unit", "standard", "none")


def read_idx(path: Path) -> np.ndarray:
    """Parses an IDX file (gzip or not) and refuses anything short, long or mistyped."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: cannot be read as gzip ({e}); expected a gzip-compressed IDX file "
            "(truncated or corrupt download?)"
        ) from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: header {data[:4].hex() or 'empty'} is not an IDX magic number; expected "
            "00 00 08 0N (unsigned bytes, N dimensions)"
        )
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{data[2]:02x}; expected 0x08 (unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: the file ends inside its {header}-byte IDX header (truncated)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    want = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != want:
        raise DataError(
            f"{path}: {len(data) - header} data bytes, expected {want} for shape {dims} "
            "(truncated or corrupt file)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_pair(x, y, images: Path, labels: Path, expected: int | None, split: str):
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{images}: image array of shape {x.shape}; expected (N, 28, 28)")
    if y.ndim != 1:
        raise DataError(f"{labels}: label array of shape {y.shape}; expected (N,)")
    if len(x) != len(y):
        raise DataError(f"{images} has {len(x)} images but {labels} has {len(y)} labels; "
                        "expected the same count")
    if expected is not None and len(x) != expected:
        raise DataError(f"{images}: {len(x)} {split} images; expected {expected} "
                        "(dataset.expected." + split + ")")
    if y.max(initial=0) > 9:
        raise DataError(f"{labels}: label {int(y.max())} found; expected digits 0-9")
    return x, y


def _limit(key: str, value, n: int) -> int:
    if value is None:
        return n
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"dataset.{key}: {value!r}; expected a positive integer or null")
    return min(value, n)


def build(cfg, data_dir: Path) -> Prepared:
    files = cfg.get("files")
    if files is None or any(k not in files for k in FILES):
        raise ConfigError(f"dataset.files: expected entries {list(FILES)}")
    paths, arrays = {}, {}
    for key in FILES:
        label = f"MNIST {key.replace('_', ' ')}"
        srcs = sources_from_cfg(files[key], f"files.{key}")

        def parse(loc: Located) -> np.ndarray:
            return read_idx(loc.path)  # a corrupt unverified file is re-fetched once

        arrays[key], loc = load_verified(label, srcs, data_dir, cfg.get("subdir"), parse)
        paths[key] = loc.path
    expected = cfg.get("expected") or {}
    xtr, ytr = _check_pair(arrays["train_images"], arrays["train_labels"], paths["train_images"],
                           paths["train_labels"], expected.get("train"), "train")
    xte, yte = _check_pair(arrays["test_images"], arrays["test_labels"], paths["test_images"],
                           paths["test_labels"], expected.get("test"), "test")

    val_size = int(cfg.get("val_size", 5000))
    if not 0 < val_size < len(xtr):
        raise ConfigError(f"dataset.val_size: {val_size}; expected 0 < val_size < "
                          f"{len(xtr)} (the training images)")
    g = torch.Generator().manual_seed(int(cfg.get("split_seed", 0)))
    order = torch.randperm(len(xtr), generator=g).numpy()
    val_idx, tr_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    tr_idx = tr_idx[: _limit("train_limit", cfg.get("train_limit"), len(tr_idx))]
    val_idx = val_idx[: _limit("val_limit", cfg.get("val_limit"), len(val_idx))]
    te_n = _limit("test_limit", cfg.get("test_limit"), len(xte))

    def to_float(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32))

    parts = [to_float(xtr[tr_idx]), to_float(xtr[val_idx]), to_float(xte[:te_n])]
    labels = [torch.from_numpy(y.astype(np.int64)) for y in (ytr[tr_idx], ytr[val_idx], yte[:te_n])]
    norm = cfg.get("normalize", "center")
    if norm not in NORMALIZE:
        raise ConfigError(f"dataset.normalize: {norm!r}; expected one of {list(NORMALIZE)}")
    if norm == "standard":
        mean, std = float(parts[0].mean()), float(parts[0].std())
        parts = [(p - mean) / std for p in parts]
    elif norm != "none":
        shift = 0.5 if norm == "center" else 0.0
        parts = [p / 255.0 - shift for p in parts]

    majority = int(torch.bincount(labels[0], minlength=10).argmax())
    splits = [TensorSplit(x, y, torch.full_like(y, majority)) for x, y in zip(parts, labels,
                                                                               strict=True)]
    info = DatasetInfo(
        name=cfg.name, task="classification", metric=cfg.metric, direction=cfg.direction,
        seq_len=28, n_features=28, num_classes=10, feature_names=tuple(f"px{i}" for i in range(28)),
        target_name="digit", class_names=tuple(str(i) for i in range(10)),
        notes={"normalize": norm, "majority_class": str(majority),
               "source": str(paths["train_images"].parent)},
    )
    return Prepared(info, *splits)
