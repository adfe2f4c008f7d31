"""A reader for the ``.ts`` files of the UCR/UEA classification and TSER regression archives.

The format (Bagnall et al.; the archive's ``.ts`` specification as sktime and aeon read
it): ``#`` comment lines, then ``@``-header lines whose keys are case-insensitive
(``@problemName``, ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimensions``,
``@equalLength``, ``@seriesLength``, ``@classLabel true <labels...>`` or
``@targetLabel true``), then ``@data`` and one case a line: each dimension's values
comma-separated, ``:`` between dimensions, the class label or regression target last.
``?`` marks a missing value. Series may differ in length between cases (``@equalLength
false``); within one case every dimension has the same length.

Every problem stops with a :class:`DataError` naming the file, the line and what was
expected, since a silently misread case is a wrong benchmark result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from bench.data.base import DataError

MISSING = ("error", "interpolate")
_TRUE, _FALSE = "true", "false"


@dataclass
class TsData:
    """The cases of one ``.ts`` file, as read."""

    where: str
    problem: str | None
    series: list[np.ndarray]  # one (T_i, D) float64 array per case
    labels: list[str]  # the label field of each case, as written
    lines: list[int]  # the file line of each case
    class_labels: tuple[str, ...] | None  # declared by @classLabel; None for regression
    dims: int
    n_missing: int = 0  # values given as '?' (filled when missing='interpolate')
    header: dict[str, str] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "classification" if self.class_labels is not None else "regression"

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.series], dtype=np.int64)


def _bool(value: str, key: str, where: str, line: int) -> bool:
    v = value.strip().lower()
    if v not in (_TRUE, _FALSE):
        raise DataError(f"{where}, line {line}: @{key} {value!r}; expected 'true' or 'false'")
    return v == _TRUE


def _count(value: str, key: str, where: str, line: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(f"{where}, line {line}: @{key} {value!r}; expected a positive integer")
    return n


def _interpolate(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs in time, the ends held at the nearest known value."""
    known = ~np.isnan(values)
    t = np.arange(len(values))
    return np.interp(t, t[known], values[known])


def _values(text: str, where: str, line: int, dim: int, missing: str) -> tuple[np.ndarray, int]:
    parts = text.split(",")
    try:
        return np.array(parts, dtype=np.float64), 0
    except ValueError:
        pass
    out = np.empty(len(parts))
    n_missing = 0
    for i, p in enumerate(parts):
        p = p.strip()
        if p == "?":
            if missing == "error":
                raise DataError(
                    f"{where}, line {line}, dimension {dim + 1}, value {i + 1}: missing value '?'; "
                    "expected a number (set dataset.missing=interpolate to fill missing values "
                    "linearly in time)"
                )
            out[i], n_missing = np.nan, n_missing + 1
            continue
        try:
            out[i] = float(p)
        except ValueError:
            raise DataError(
                f"{where}, line {line}, dimension {dim + 1}, value {i + 1}: {p!r} is not a "
                "number; expected comma-separated numbers (or '?' for a missing value)"
            ) from None
    if n_missing:
        if np.isnan(out).all():
            raise DataError(f"{where}, line {line}, dimension {dim + 1}: every value is missing; "
                            "expected at least one number to interpolate from")
        out = _interpolate(out)
    return out, n_missing


class _Header:
    """The ``@`` lines before ``@data``, checked as they come."""

    def __init__(self, where: str):
        self.where = where
        self.raw: dict[str, str] = {}
        self.class_labels: tuple[str, ...] | None = None
        self.target = False
        self.dims: int | None = None
        self.equal_length: bool | None = None
        self.series_length: int | None = None

    def read(self, key: str, value: str, line: int) -> None:
        w = self.where
        self.raw[key] = value
        if key == "timestamps" and _bool(value, "timeStamps", w, line):
            raise DataError(f"{w}, line {line}: @timeStamps true is not supported; expected "
                            "@timeStamps false (values without time stamps)")
        elif key == "univariate" and _bool(value, "univariate", w, line):
            self.dims = 1
        elif key in ("dimensions", "dimension"):
            self.dims = _count(value, "dimensions", w, line)
        elif key == "equallength":
            self.equal_length = _bool(value, "equalLength", w, line)
        elif key == "serieslength":
            self.series_length = _count(value, "seriesLength", w, line)
        elif key == "classlabel":
            flag, *labels = value.split()
            if _bool(flag or "", "classLabel", w, line):
                if not labels:
                    raise DataError(f"{w}, line {line}: @classLabel true declares no labels; "
                                    "expected '@classLabel true <label> <label> ...'")
                self.class_labels = tuple(labels)
        elif key == "targetlabel":
            self.target = _bool(value.split()[0] if value.split() else "", "targetLabel", w, line)

    def finish(self, line: int) -> None:
        if self.class_labels is None and not self.target:
            raise DataError(f"{self.where}, line {line}: the header declares neither @classLabel "
                            "true nor @targetLabel true; expected labelled cases (the last "
                            "field of each line)")
        if self.class_labels is not None and self.target:
            raise DataError(f"{self.where}, line {line}: the header declares both @classLabel and "
                            "@targetLabel; expected one")


def read_ts(lines: Iterable[str], where: str, missing: str = "error") -> TsData:
    """Parses a whole ``.ts`` file given as lines (no trailing newlines needed)."""
    if missing not in MISSING:
        raise ValueError(f"missing={missing!r}; expected one of {MISSING}")
    header = _Header(where)
    in_data = False
    series: list[np.ndarray] = []
    labels: list[str] = []
    case_lines: list[int] = []
    n_missing = 0
    n = 0
    for n, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if not in_data:
            if not text.startswith("@"):
                raise DataError(f"{where}, line {n}: {text[:40]!r} before @data; expected a "
                                "'#' comment or an '@' header line")
            key, _, value = text[1:].partition(" ")
            key = key.lower()
            if key == "data":
                header.finish(n)
                in_data = True
            else:
                header.read(key, value.strip(), n)
            continue
        fields = text.split(":")
        *dim_texts, label = fields
        if header.dims is None:
            header.dims = len(dim_texts)
        if len(dim_texts) != header.dims or not dim_texts:
            raise DataError(
                f"{where}, line {n}: {len(dim_texts)} dimension(s) and a label "
                f"({len(fields)} ':'-separated fields); expected {header.dims} dimension(s) and "
                "a label (a truncated line or a stray ':'?)"
            )
        label = label.strip()
        if not label:
            raise DataError(f"{where}, line {n}: the label (last field) is empty; expected "
                            + ("one of " + str(list(header.class_labels))
                               if header.class_labels else "a number"))
        if header.class_labels is not None and label not in header.class_labels:
            raise DataError(f"{where}, line {n}: label {label!r} is not declared in the header; "
                            f"expected one of {list(header.class_labels)} (@classLabel)")
        if header.target:
            try:
                float(label)
            except ValueError:
                raise DataError(f"{where}, line {n}: target {label!r} is not a number; expected "
                                "a numeric regression target (@targetLabel true)") from None
        dims = []
        for d, dim_text in enumerate(dim_texts):
            if not dim_text.strip():
                raise DataError(f"{where}, line {n}, dimension {d + 1}: no values; expected "
                                "comma-separated numbers")
            values, miss = _values(dim_text, where, n, d, missing)
            n_missing += miss
            dims.append(values)
        length = len(dims[0])
        if any(len(v) != length for v in dims):
            raise DataError(f"{where}, line {n}: dimensions of lengths {[len(v) for v in dims]}; "
                            "expected every dimension of a case to have the same length")
        if header.equal_length and header.series_length and length != header.series_length:
            raise DataError(f"{where}, line {n}: a series of length {length}; expected "
                            f"{header.series_length} (@seriesLength, @equalLength true)")
        series.append(np.stack(dims, axis=1))
        labels.append(label)
        case_lines.append(n)
    if not in_data:
        raise DataError(f"{where}: no @data line after {n} line(s); expected a .ts header ending "
                        "in @data (a truncated or non-.ts file?)")
    if not series:
        raise DataError(f"{where}: no cases after @data (line {n} is the last); expected one "
                        "case a line")
    return TsData(
        where=where, problem=header.raw.get("problemname"), series=series, labels=labels,
        lines=case_lines, class_labels=header.class_labels, dims=int(header.dims or 1),
        n_missing=n_missing, header=header.raw,
    )
