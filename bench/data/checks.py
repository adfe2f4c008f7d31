"""Validation of tabular input, so a bad file stops before training with a precise message.

Every error names the file, the column (the config field that asked for it) and what
was expected, and points at the line in the file where it can (CSV line numbers count
the header as line 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.data.base import DataError

LINE = "__line__"  # the file line each row came from, kept through filtering for messages


def _suggest(name: str, columns: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def require_columns(df: pd.DataFrame, columns: Sequence[str], where: str, field: str) -> None:
    present = [c for c in df.columns if c != LINE]
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"{where}: column {col!r} (dataset.{field}) not found{_suggest(col, present)}; "
                f"the file has columns {present}"
            )


def check_schema(df: pd.DataFrame, expected: Sequence[str], where: str) -> None:
    present = [c for c in df.columns if c != LINE]
    if list(expected) != present:
        missing = [c for c in expected if c not in present]
        extra = [c for c in present if c not in expected]
        detail = []
        if missing:
            detail.append(f"missing {missing}" + (_suggest(missing[0], extra) if extra else ""))
        if extra:
            detail.append(f"unexpected {extra}")
        if not detail:
            detail.append("same names in another order")
        raise DataError(
            f"{where}: columns do not match dataset.expected_columns ({'; '.join(detail)}); "
            f"expected {len(expected)} columns {list(expected)}"
        )


def check_rows(df: pd.DataFrame, expected: int | None, where: str) -> None:
    if expected is not None and len(df) != int(expected):
        raise DataError(
            f"{where}: {len(df)} data rows; expected {int(expected)} (dataset.expected_rows). "
            "A truncated download or another version of the file?"
        )


def parse_dates(df: pd.DataFrame, column: str, fmt: str | None, where: str) -> pd.Series:
    raw = df[column]
    try:
        parsed = pd.to_datetime(raw, format=fmt, errors="coerce")
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: column {column!r} (dataset.date_column) cannot be parsed as "
                        f"dates with format {fmt!r}: {e}") from e
    bad = parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{where}, line {int(df[LINE].iloc[i])}: {raw.iloc[i]!r} in column {column!r} "
            f"(dataset.date_column) is not a date in the format {fmt!r} (dataset.date_format); "
            f"{int(bad.sum())} unparseable value(s) in all"
        )
    return parsed


def to_numeric(df: pd.DataFrame, columns: Sequence[str], where: str, field: str) -> pd.DataFrame:
    """Columns as float64; a non-numeric cell is an error, an empty cell stays NaN."""
    out = {}
    for col in columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("float64")
            continue
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{where}, line {int(df[LINE].iloc[i])}: {s.iloc[i]!r} in column {col!r} "
                f"(dataset.{field}) is not a number; expected numeric values "
                f"({int(bad.sum())} non-numeric cell(s) in that column)"
            )
        out[col] = num.astype("float64")
    return pd.DataFrame(out, index=df.index)


def check_not_empty_columns(df: pd.DataFrame, columns: Sequence[str], where: str,
                            field: str) -> None:
    for col in columns:
        if df[col].isna().all():
            raise DataError(
                f"{where}: column {col!r} (dataset.{field}) has no values (all empty/NaN) in the "
                "selected rows; expected numbers"
            )


def check_finite(values: np.ndarray, names: Sequence[str], lines: np.ndarray, where: str,
                 field: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{where}, line {int(lines[r])}: column {names[c]!r} (dataset.{field}) is empty or "
            f"not finite; expected a number ({int(bad.sum())} such cell(s)). Set "
            "dataset.missing=drop to drop rows with missing values"
        )
