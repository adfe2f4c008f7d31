"""IMDB sentiment from Stanford's raw text (tarball or extracted ``aclImdb/`` folder).

Tokenisation follows Keras's ``Tokenizer`` so reference numbers carry over: ``<br />``
removed, lower-cased, punctuation turned into spaces, split on whitespace. The
vocabulary (the ``num_words`` most frequent words) is fitted on the training split only,
so validation and test reviews never shape it. Ids: 0 padding, 1 out-of-vocabulary,
words from 2 in order of frequency. Sequences are cut/padded Keras-style (``pre`` by
default: keep the review's end, pad in front).

Tokenising 50,000 reviews takes a while, so the token ids (before padding, so any
``maxlen`` reuses them) are cached under a key made of every setting that shapes them
plus the source file's identity; a changed file or setting gives a new key, never a
stale array.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench.data.base import ConfigError, DataError, DatasetInfo, Prepared, TensorSplit
from bench.data.download import (
    Located,
    cache_dir,
    cache_key,
    load_verified,
    source_fingerprint,
    sources_from_cfg,
)

TOKENIZER_VERSION = 1  # bump when tokenisation changes: invalidates every cache
PAD, OOV, FIRST_WORD = 0, 1, 2
MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Keras Tokenizer's default filters: these become spaces; the apostrophe survives.
_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_TABLE = str.maketrans({c: " " for c in _FILTERS})


def tokenize(text: str) -> list[str]:
    return _BR.sub(" ", text).lower().translate(_TABLE).split()


def _read_tar(path: Path) -> list[tuple[str, int, int, str]]:
    out = []
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    hit = MEMBER.search(m.name)
                    if not hit or not m.isfile():
                        continue
                    f = tar.extractfile(m)
                    text = f.read().decode("utf-8", errors="replace") if f else ""
                    out.append((hit[1], int(hit[2] == "pos"), int(hit[3]), text))
            # a streamed tar stops quietly at a cut; draining gzip to its end-of-stream
            # marker is what notices a truncated download
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path}: cannot be read as a tar archive ({e.__class__.__name__}: {e}); expected "
            "Stanford's aclImdb tarball (truncated or corrupt download?)"
        ) from e
    return out


def _read_dir(path: Path) -> list[tuple[str, int, int, str]]:
    out = []
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            folder = path / split / label
            for f in folder.glob("*.txt") if folder.is_dir() else ():
                hit = MEMBER.search(f"aclImdb/{split}/{label}/{f.name}")
                if hit:
                    out.append((split, int(label == "pos"), int(hit[3]),
                                f.read_text(encoding="utf-8", errors="replace")))
    return out


def read_reviews(loc: Located, expected: dict | None) -> list[tuple[str, int, int, str]]:
    """All labelled reviews as ``(split, label, id, text)``, sorted, counts checked."""
    reviews = _read_dir(loc.path) if loc.path.is_dir() else _read_tar(loc.path)
    reviews.sort(key=lambda r: (r[0], r[1], r[2]))
    counts = Counter((r[0], r[1]) for r in reviews)
    for split in ("train", "test"):
        for label, name in ((0, "neg"), (1, "pos")):
            n, want = counts[(split, label)], (expected or {}).get(split)
            if want is not None and n != want // 2:
                raise DataError(
                    f"{loc.path}: {n} reviews in aclImdb/{split}/{name}; expected {want // 2} "
                    f"(dataset.expected.{split} = {want}, half of them {name}); truncated archive "
                    "or wrong file?"
                )
            if n == 0:
                raise DataError(f"{loc.path}: no reviews in aclImdb/{split}/{name}; expected "
                                "files named <id>_<rating>.txt")
    return reviews


def _fingerprint(path: Path) -> dict:
    if not path.is_dir():
        return source_fingerprint(path)
    subs = [path / s / lab for s in ("train", "test") for lab in ("neg", "pos")]
    return {"path": str(path.resolve()),
            "dirs": [(str(p), p.stat().st_mtime_ns) for p in subs if p.is_dir()]}


def _tokenised(cfg, loc: Located, data_dir: Path) -> dict[str, np.ndarray]:
    """Token ids of every review (ragged: flat ids + offsets), the split and the labels."""
    num_words = int(cfg.get("num_words", 10000))
    val_size = int(cfg.get("val_size", 5000))
    fit_on = cfg.get("fit_vocab_on", "train")
    if fit_on not in ("train", "train_and_val"):
        raise ConfigError(f"dataset.fit_vocab_on: {fit_on!r}; expected 'train' or 'train_and_val'")
    params = {
        "v": TOKENIZER_VERSION, "num_words": num_words, "val_size": val_size,
        "split_seed": int(cfg.get("split_seed", 0)), "fit_vocab_on": fit_on,
        "expected": dict(cfg.get("expected") or {}), "source": _fingerprint(loc.path),
    }
    key = cache_key(params)
    folder = cache_dir(data_dir)
    path = folder / f"imdb-tokens-{key}.npz"
    if cfg.get("cache", True) and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if str(arrays["key"]) == key:
                return arrays
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # a damaged cache is rebuilt, not trusted

    reviews = read_reviews(loc, cfg.get("expected"))
    tokens = [tokenize(r[3]) for r in reviews]
    split = np.array([0 if r[0] == "train" else 2 for r in reviews], dtype=np.int8)
    labels = np.array([r[1] for r in reviews], dtype=np.int8)
    train_rows = np.flatnonzero(split == 0)
    if not 0 < val_size < len(train_rows):
        raise ConfigError(f"dataset.val_size: {val_size}; expected 0 < val_size < "
                          f"{len(train_rows)} (the training reviews)")
    g = torch.Generator().manual_seed(int(cfg.get("split_seed", 0)))
    perm = torch.randperm(len(train_rows), generator=g).numpy()
    split[train_rows[perm[:val_size]]] = 1

    counts: Counter[str] = Counter()
    fit_rows = np.flatnonzero(split == 0) if fit_on == "train" else train_rows
    for i in fit_rows:
        counts.update(tokens[i])
    vocab = [w for w, _ in counts.most_common(num_words)]
    index = {w: i + FIRST_WORD for i, w in enumerate(vocab)}
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    flat = np.fromiter((index.get(w, OOV) for t in tokens for w in t), dtype=np.int32,
                       count=int(lengths.sum()))
    arrays = {
        "key": np.array(key), "ids": flat, "offsets": np.concatenate([[0], np.cumsum(lengths)]),
        "split": split, "labels": labels, "vocab": np.array(vocab),
        "review_ids": np.array([r[2] for r in reviews], dtype=np.int64),
    }
    if cfg.get("cache", True):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{path.stem}.{os.getpid()}.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:
            pass  # no writable cache: still correct, only slower next time
    return arrays


def pad(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray, maxlen: int,
        padding: str, truncating: str) -> np.ndarray:
    """Keras ``pad_sequences`` over ragged ids: 'pre' truncation keeps a review's end."""
    out = np.full((len(rows), maxlen), PAD, dtype=np.int64)
    for j, i in enumerate(rows):
        seq = ids[offsets[i] : offsets[i + 1]]
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if len(seq) == 0:
            continue
        if padding == "pre":
            out[j, maxlen - len(seq) :] = seq
        else:
            out[j, : len(seq)] = seq
    return out


def build(cfg, data_dir: Path) -> Prepared:
    maxlen = cfg.get("maxlen")
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen <= 0:
        raise ConfigError(f"dataset.maxlen: {maxlen!r}; expected a positive integer")
    for key in ("padding", "truncating"):
        if cfg.get(key, "pre") not in ("pre", "post"):
            raise ConfigError(f"dataset.{key}: {cfg.get(key)!r}; expected 'pre' or 'post'")
    srcs = sources_from_cfg(cfg.get("sources"), "sources")
    arrays, loc = load_verified(
        "IMDB reviews", srcs, data_dir, cfg.get("subdir"),
        lambda loc: _tokenised(cfg, loc, data_dir),
    )
    splits, sizes = [], {}
    majority = None
    for code, name in enumerate(("train", "val", "test")):
        rows = np.flatnonzero(arrays["split"] == code)
        # the archive is grouped by label: a seeded shuffle makes any *_limit subset balanced
        rng = np.random.default_rng(int(cfg.get("split_seed", 0)) + code)
        rows = rows[rng.permutation(len(rows))]
        limit = cfg.get(f"{name}_limit")
        if limit is not None:
            rows = rows[: int(limit)]
        x = torch.from_numpy(pad(arrays["ids"], arrays["offsets"], rows, maxlen,
                                 cfg.get("padding", "pre"), cfg.get("truncating", "pre")))
        y = torch.from_numpy(arrays["labels"][rows].astype(np.int64))
        if majority is None:
            majority = int(torch.bincount(y, minlength=2).argmax())
        splits.append(TensorSplit(x, y, torch.full_like(y, majority)))
        sizes[name] = len(rows)
    vocab_size = len(arrays["vocab"]) + FIRST_WORD
    info = DatasetInfo(
        name=cfg.name, task="classification", metric=cfg.metric, direction=cfg.direction,
        seq_len=maxlen, n_features=1, num_classes=2, vocab_size=vocab_size,
        vocabulary=("",) * FIRST_WORD + tuple(str(w) for w in arrays["vocab"]),
        feature_names=("token",), target_name="sentiment", class_names=("neg", "pos"),
        notes={"source": str(loc.path), "majority_class": str(majority),
               "words": str(len(arrays["vocab"]))},
    )
    return Prepared(info, *splits)
