"""Any dataset of the UCR/UEA classification archive or the TSER regression archive, by name.

``python -m bench dataset=ucr dataset.name=GunPoint`` (``dataset=tser`` for regression)
reads ``<Name>/<Name>_TRAIN.ts`` and ``<Name>_TEST.ts`` from the data directory (under
``dataset.subdir``, else directly under it), or the archive's ``<Name>.zip``; with internet
a missing dataset is downloaded from the archive (the URL aeon and sktime use) and cached.
No checksums are published, so a download is checked by parsing it whole (and against
``dataset.expected`` case counts where the config pins them); a download that fails to
parse is set aside, never used.

Splits are the archive's train/test. Validation is a seeded hold-out of the training
cases, stratified by class, so model selection never sees the test cases.

Normalisation (``dataset.normalize``): the univariate UCR sets come z-normalised per series
by the archive, the multivariate UEA sets do not, and per-series z-normalisation can wreck
them (it removes each dimension's level and scale, which carry the class on sets such as
JapaneseVowels). The default, ``dimension``, standardises each dimension with the training
cases' mean and standard deviation: close to the identity on z-normalised sets, and it keeps
amplitude differences elsewhere. ``series`` is the archive's per-series convention,
``none`` leaves values as read.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from bench.data.base import ConfigError, DataError, DatasetInfo, Prepared, TensorSplit
from bench.data.download import Located, Source, load_verified
from bench.data.ts_format import MISSING, TsData, read_ts
from bench.vocab import NORMALIZE

URL = "https://timeseriesclassification.com/aeon-toolkit/{name}.zip"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def archive_name(cfg) -> str:
    name = cfg.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"dataset.name: {name!r}; expected an archive dataset name such as "
                          "'GunPoint' or 'JapaneseVowels' (letters, digits, '_' or '-')")
    return name


def sources(cfg) -> list[Source]:
    """The extracted folder first (a copy placed by hand), then the archive's zip."""
    name = archive_name(cfg)
    url = str(cfg.get("url") or URL).format(name=name)
    return [Source(name=name, is_dir=True), Source(name=f"{name}.zip", url=url)]


def _split_file(names: list[str], name: str, split: str) -> str | None:
    want = f"{name}_{split}.ts".lower()
    hits = [n for n in names if n.replace("\\", "/").rsplit("/", 1)[-1].lower() == want]
    return min(hits, key=len) if hits else None


def read_pair(loc: Located, name: str, missing: str) -> tuple[TsData, TsData]:
    """The TRAIN and TEST files of a dataset folder or zip."""
    path = loc.path
    out = []
    if path.is_dir():
        files = [str(p.relative_to(path)) for p in path.rglob("*.ts")]
        for split in ("TRAIN", "TEST"):
            member = _split_file(files, name, split)
            if member is None:
                raise DataError(f"{path}: no {name}_{split}.ts; expected the archive's layout "
                                f"<data_dir>/{name}/{name}_TRAIN.ts and {name}_TEST.ts")
            f = path / member
            try:
                text = f.read_text(encoding="utf-8", errors="strict")
            except (OSError, UnicodeDecodeError) as e:
                raise DataError(f"{f}: cannot be read as text ({e}); expected a .ts file") from e
            out.append(read_ts(text.splitlines(), str(f), missing))
        return out[0], out[1]
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            for split in ("TRAIN", "TEST"):
                member = _split_file(names, name, split)
                if member is None:
                    raise DataError(f"{path}: the zip holds no {name}_{split}.ts; expected the "
                                    "archive's zip of this dataset")
                text = zf.read(member).decode("utf-8")
                out.append(read_ts(text.splitlines(), f"{path}!{member}", missing))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable zip of .ts files ({e}); truncated or corrupt "
                        "download?") from e
    return out[0], out[1]


def holdout(labels: np.ndarray, size, seed: int, stratify: bool) -> np.ndarray:
    """Indices of the validation cases: per class ``round(size * n_class)`` (or a count
    spread the same way), each class keeping at least one training case."""
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0 or (
            isinstance(size, float) and size >= 1):
        raise ConfigError(f"dataset.val_size: {size!r}; expected a fraction in (0, 1) or a "
                          "positive number of training cases")
    frac = size / n if isinstance(size, int) else float(size)
    if isinstance(size, int) and size >= n:
        raise ConfigError(f"dataset.val_size: {size} cases; the training file has only {n}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [
        np.arange(n)]
    picked = []
    for g in groups:
        g = g[rng.permutation(len(g))]
        k = min(len(g) - 1, int(round(frac * len(g))))
        picked.append(g[:max(k, 0)])
    idx = np.sort(np.concatenate(picked))
    if len(idx) == 0:
        raise ConfigError(f"dataset.val_size: {size!r} holds out no case of {n}; expected a "
                          "larger fraction or count")
    return idx


def _pad(series: list[np.ndarray], length: int, dims: int) -> np.ndarray:
    out = np.zeros((len(series), length, dims), dtype=np.float32)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out


def _normalise(kind: str, train: list[np.ndarray], parts: list[list[np.ndarray]]):
    if kind not in NORMALIZE:
        raise ConfigError(f"dataset.normalize: {kind!r}; expected one of {list(NORMALIZE)}")
    if kind == "none":
        return parts
    if kind == "series":
        def z(s):
            sd = s.std(0)
            return (s - s.mean(0)) / np.where(sd > 0, sd, 1.0)
        return [[z(s) for s in p] for p in parts]
    values = np.concatenate(train, axis=0)
    mean, sd = values.mean(0), values.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [[(s - mean) / sd for s in p] for p in parts]


def _check_counts(cfg, data: dict[str, TsData]) -> None:
    expected = cfg.get("expected") or {}
    for split in ("train", "test"):
        want = expected.get(split)
        got = len(data[split].series)
        if want is not None and got != int(want):
            raise DataError(f"{data[split].where}: {got} cases; expected {want} "
                            f"(dataset.expected.{split}); a truncated or different file?")


def _check_task(cfg, train: TsData, test: TsData) -> None:
    for d in (train, test):
        if d.task != cfg.task:
            other = "tser" if d.task == "regression" else "ucr"
            raise ConfigError(
                f"dataset.task: {cfg.task!r}, but {d.where} is a {d.task} problem "
                f"({'@targetLabel' if d.task == 'regression' else '@classLabel'}); use "
                f"dataset={other} dataset.name={cfg.name}"
            )
    if train.dims != test.dims:
        raise DataError(f"{test.where}: {test.dims} dimension(s); expected {train.dims} as in "
                        f"{train.where}")
    if (train.class_labels is not None and test.class_labels is not None
            and set(test.class_labels) != set(train.class_labels)):
        raise DataError(f"{test.where}: @classLabel {list(test.class_labels)}; expected the "
                        f"training file's {list(train.class_labels)}")


def build(cfg, data_dir: Path) -> Prepared:
    name = archive_name(cfg)
    missing = cfg.get("missing", "error")
    if missing not in MISSING:
        raise ConfigError(f"dataset.missing: {missing!r}; expected one of {list(MISSING)}")
    (train_f, test_f), loc = load_verified(
        f"archive dataset {name!r}", sources(cfg), data_dir, cfg.get("subdir"),
        lambda loc: read_pair(loc, name, missing),
    )
    _check_task(cfg, train_f, test_f)
    _check_counts(cfg, {"train": train_f, "test": test_f})

    classification = cfg.task == "classification"
    if classification:
        if train_f.class_labels is None:  # _check_task: a classification file declares them
            raise DataError(f"{train_f.where}: no @classLabel in a classification problem")
        classes = train_f.class_labels
        index = {c: i for i, c in enumerate(classes)}
        y_train_all = np.array([index[c] for c in train_f.labels], dtype=np.int64)
        y_test = np.array([index[c] for c in test_f.labels], dtype=np.int64)
    else:
        classes = ()
        y_train_all = np.array(train_f.labels, dtype=np.float64)
        y_test = np.array(test_f.labels, dtype=np.float64)

    val_idx = holdout(y_train_all, cfg.get("val_size", 0.2), int(cfg.get("split_seed", 0)),
                      stratify=classification)
    train_idx = np.setdiff1d(np.arange(len(y_train_all)), val_idx)
    series = {
        "train": [train_f.series[i] for i in train_idx],
        "val": [train_f.series[i] for i in val_idx],
        "test": test_f.series,
    }
    ys = {"train": y_train_all[train_idx], "val": y_train_all[val_idx], "test": y_test}
    normed = _normalise(cfg.get("normalize", "dimension"), series["train"],
                        [series[k] for k in ("train", "val", "test")])
    series = dict(zip(("train", "val", "test"), normed, strict=True))

    all_lengths = np.concatenate([[len(s) for s in series[k]] for k in series])
    length, dims = int(all_lengths.max()), train_f.dims
    equal = bool((all_lengths == length).all())

    t_off, t_scale = 0.0, 1.0
    if classification:
        majority = int(np.bincount(ys["train"], minlength=len(classes)).argmax())
        naive_value: float = majority
        naive_text = "majority class " + str(classes[majority])
    else:
        t_off, t_scale = float(ys["train"].mean()), float(ys["train"].std()) or 1.0
        naive_value = 0.0  # the training mean, in scaled units
        naive_text = "training mean"
    splits, sizes = [], {}
    for split in ("train", "val", "test"):
        x = torch.from_numpy(_pad(series[split], length, dims))
        if classification:
            y = torch.from_numpy(ys[split])
        else:
            y = torch.from_numpy(((ys[split] - t_off) / t_scale).astype(np.float32))
        lengths = None if equal else torch.tensor([len(s) for s in series[split]])
        splits.append(TensorSplit(x, y, torch.full_like(y, naive_value), lengths))
        sizes[split] = len(y)

    info = DatasetInfo(
        name=cfg.name, task=cfg.task, metric=cfg.metric, direction=cfg.direction,
        seq_len=length, n_features=dims, num_classes=len(classes) if classification else None,
        units=cfg.get("units"), target_scale=t_scale, target_offset=t_off,
        feature_names=tuple(f"dim_{d}" for d in range(dims)),
        target_name="class" if classification else str(cfg.get("target_name") or "target"),
        class_names=tuple(classes),
        notes={
            "source": str(loc.path), "problem": str(train_f.problem or name),
            "cases": f"{len(train_f.series)} train file, {len(test_f.series)} test file",
            **{f"samples_{k}": str(v) for k, v in sizes.items()},
            "lengths": f"{int(all_lengths.min())}-{length}" if not equal else str(length),
            "dimensions": str(dims), "normalize": str(cfg.get("normalize", "dimension")),
            "missing_values": str(train_f.n_missing + test_f.n_missing),
            "naive": naive_text,
        },
    )
    return Prepared(info, *splits)
