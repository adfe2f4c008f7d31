"""Pretrained word vectors (GloVe's text format) as an embedding matrix for a vocabulary.

GloVe files are one word a line followed by its vector, space-separated
(``glove.6B.100d.txt``); Stanford NLP publishes them zipped (``glove.6B.zip`` holds the
50-, 100-, 200- and 300-d files). ``model.embedding.pretrained`` takes a file (``.txt`` or
``.zip``; relative paths are under the data directory) or a published name such as
``glove.6B.100d``, looked for under ``<data_dir>/glove/`` and downloaded from Stanford NLP
when missing and online. Only the vectors of the dataset's vocabulary are kept, so the
400,000-word file never sits in memory whole.

Rows of words the file lacks are zeros (``missing: zeros``, the tutorials' choice: such a
word contributes nothing until it is learned, and nothing at all when frozen) or small
seeded random values (``missing: random``, U(-0.05, 0.05), Keras's embedding init); the
padding row is always zero.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import ConfigError, DataError
from bench.data.download import Located, Source, load_verified

URL = "https://nlp.stanford.edu/data/glove.6B.zip"
MISSING = ("zeros", "random")
_NAME = re.compile(r"^glove\.6B\.(\d+)d$")


def sources(pretrained: str, data_dir: Path) -> tuple[list[Source], Path, str | None, str]:
    """``(sources, root, subdir, member)`` for a path or a published name."""
    m = _NAME.match(pretrained)
    if m:
        member = f"{pretrained}.txt"
        return ([Source(name=member), Source(name="glove.6B.zip", url=URL, member=member)],
                data_dir, "glove", member)
    p = Path(pretrained).expanduser()
    if not p.is_absolute():
        p = data_dir / p
    member = p.name if p.suffix.lower() == ".txt" else ""
    return [Source(name=p.name)], p.parent, None, member


def read_vectors(lines: Iterable[str], where: str, words: set[str]
                 ) -> tuple[dict[str, np.ndarray], int]:
    """The vectors of ``words`` found in the file, and the file's dimension (checked on
    every line, not only the kept ones: a short line means a corrupt file)."""
    dim = None
    found: dict[str, np.ndarray] = {}
    n = 0
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        # the word itself may contain spaces in a few GloVe files: the vector is the tail
        parts = line.rstrip().split(" ")
        if dim is None:
            dim = len(parts) - 1
            if dim < 1:
                raise DataError(f"{where}, line {n}: no vector after the word; expected "
                                "'<word> <v1> <v2> ...'")
        if len(parts) - 1 != dim:
            raise DataError(f"{where}, line {n}: {len(parts) - 1} values; expected {dim} (the "
                            "dimension of line 1): a truncated or corrupt file?")
        word = parts[0]
        if word in words and word not in found:
            try:
                found[word] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(f"{where}, line {n}: a value of {word!r} is not a number") from None
    if dim is None:
        raise DataError(f"{where}: no vectors (empty file); expected GloVe's text format")
    return found, dim


def _read(loc: Located, member: str, words: set[str]) -> tuple[dict[str, np.ndarray], int]:
    path = loc.path
    if path.suffix.lower() != ".zip":
        with open(path, encoding="utf-8", errors="strict") as f:
            try:
                return read_vectors(f, str(path), words)
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not UTF-8 text ({e}); expected GloVe's text format") from e
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".txt")]
            pick = member or (names[0] if len(names) == 1 else "")
            if pick not in names:
                raise DataError(f"{path}: no member {pick or '<one .txt>'!r}; the zip holds "
                                f"{names} (name the vectors, e.g. glove.6B.100d)")
            with zf.open(pick) as raw:
                return read_vectors(io.TextIOWrapper(raw, encoding="utf-8"), f"{path}!{pick}",
                                    words)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip ({e}); truncated download?") from e


def embedding_matrix(spec, vocabulary: tuple[str, ...], dim: int, data_dir: Path,
                     seed: int = 0) -> tuple[torch.Tensor, int]:
    """``(matrix, words found)`` for ``vocabulary`` (index -> word; '' for reserved ids)."""
    pretrained = str(spec.get("pretrained"))
    missing = spec.get("missing", "zeros")
    if missing not in MISSING:
        raise ConfigError(f"model.embedding.missing: {missing!r}; expected one of {list(MISSING)}")
    if not vocabulary:
        raise ConfigError("model.embedding.pretrained: set, but the dataset has no vocabulary; "
                          "expected a token dataset such as dataset=imdb")
    srcs, root, subdir, member = sources(pretrained, data_dir)
    words = {w for w in vocabulary if w}
    (found, file_dim), loc = load_verified(f"word vectors {pretrained!r}", srcs, root, subdir,
                                           lambda loc: _read(loc, member, words))
    if file_dim != dim:
        raise ConfigError(f"model.embedding_dim: {dim}, but {loc.path} holds {file_dim}-d "
                          f"vectors; expected model.embedding_dim={file_dim}")
    rng = np.random.default_rng(seed)
    out = (rng.uniform(-0.05, 0.05, (len(vocabulary), dim)).astype(np.float32)
           if missing == "random" else np.zeros((len(vocabulary), dim), dtype=np.float32))
    out[0] = 0.0  # padding
    for i, w in enumerate(vocabulary):
        if w in found:
            out[i] = found[w]
    return torch.from_numpy(out), len(found)
