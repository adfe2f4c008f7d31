"""One loader for every CSV time series (Jena, SBUX, Samsung, any CSV by config).

The pipeline, each step a config value (see ``conf/dataset/{jena,sbux,samsung,csv}.yaml``):
read the CSV (plain or inside a zip) -> validate schema/rows -> parse dates -> put rows in
date order (or refuse them) and refuse repeated dates -> select a date range -> drop flagged rows -> add derived features -> transform the target ->
drop the leading rows those leave undefined -> split rows in time order -> fit scalers
on training rows only -> windows.

Windows follow :class:`bench.data.base.WindowSplit`: the sample whose target sits at row
``t`` has its anchor at ``a = t - delay`` and sees rows ``a - lookback .. a - step``.
So with ``step=1, delay=0`` it sees up to the day before the target (a next-step
forecast) and with ``delay=-step`` the target's own row (a same-row "nowcast", kept
for reference setups that do that). Splits assign *target rows*; with
``window_context: past`` a window may read rows before its split (they are in the past
of every target in it, as when windows are cut from the whole series and then split),
with ``within_split`` (the textbook's generators) it may not.

The persistence baseline predicts the target's last value the model could have seen:
row ``a - step`` normally, the row before the target in the same-row setup. A seasonal
series (``season: m``) gets the seasonal naive forecast instead, the value one season
(or the fewest whole seasons the horizon allows) before the target, and every run also
reports MASE: the mean absolute error scaled by the in-sample mean absolute error of the
seasonal naive forecast on the training rows (Hyndman & Koehler 2006), so errors compare
across series of different units and scales.

Besides CSV files, a series may come from a dataset that ``statsmodels`` ships
(``statsmodels: {dataset: co2}``); a table with one row per year and one column per
month (``stack_columns``) is read row by row into one series.
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.data import checks
from bench.data.base import ConfigError, DataError, DatasetInfo, Prepared, WindowSplit
from bench.data.download import Located, Source, load_verified, sources_from_cfg

SCALERS = ("standard", "minmax", "none")
TRANSFORMS = ("level", "return")
SPLIT_BY = ("rows", "fraction", "date")
SPLIT_NAMES = ("train", "val", "test")
CONTEXTS = ("within_split", "past")
MISSING = ("error", "drop", "interpolate")
TIME_ORDERS = ("sort", "strict")
DUPLICATE_DATES = ("error", "keep")

log = logging.getLogger(__name__)
DERIVED_OPS = ("rolling_mean", "pct_change")


class SeriesWindows(WindowSplit):
    """A :class:`WindowSplit` whose persistence forecast may lag further than ``a - step``.

    Only needed for the same-row setup (``delay == -step``), where ``a - step`` is the
    target's own row and "persistence" would be the answer itself.
    """

    def __init__(self, features, target, anchors, lookback, step, delay, naive_lag=None):
        super().__init__(features, target, anchors, lookback, step, delay)
        self.naive_lag = step + delay if naive_lag is None else int(naive_lag)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().__getitem__(idx)
        if self.naive_lag != self.step + self.delay:
            out["naive"] = self.target[self.anchors[idx] + self.delay - self.naive_lag]
        return out


@dataclass
class Table:
    """The processed series before scaling: what the report and the CLI describe."""

    path: str
    dates: pd.Series
    features: np.ndarray  # (N, F) float64
    target: np.ndarray  # (N,) float64, after the target transform
    lines: np.ndarray  # file line of each row
    feature_names: list[str]
    target_name: str
    units: str | None
    rows_in_file: int
    rows_selected: int  # after the date range
    rows_dropped: int  # by drop_rows
    rows_leading: int  # leading rows left undefined by derived features / returns
    values_interpolated: int = 0  # missing cells filled (missing: interpolate)


# ------------------------------------------------------------------------------- reading


def _sources(cfg, data_dir: Path) -> tuple[list[Source], Path, str | None]:
    """``path``/``url`` (the generic csv config) or the ``sources`` list (named datasets)."""
    path, url = cfg.get("path"), cfg.get("url")
    if path:
        p = Path(str(path)).expanduser()
        if not p.is_absolute():
            p = data_dir / p
        return [Source(name=p.name, url=url, member=cfg.get("member"))], p.parent, None
    if url:
        name = str(url).rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        return [Source(name=name, url=url, member=cfg.get("member"))], data_dir, cfg.get("subdir")
    if not cfg.get("sources"):
        raise ConfigError(
            f"dataset.path: dataset {cfg.get('name')!r} names no file; set dataset.path=<csv file> "
            "(or dataset.url=<URL>, or a dataset.sources list)"
        )
    return sources_from_cfg(cfg.sources, "sources"), data_dir, cfg.get("subdir")


def _read_csv(handle, where: str, cfg) -> pd.DataFrame:
    try:
        df = pd.read_csv(handle, sep=cfg.get("sep", ","), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: not a readable CSV ({e.__class__.__name__}: "
                        f"{str(e).strip()}); expected a comma-separated file with a header") from e
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DataError(f"{where}: the compressed data is corrupt ({e}); truncated download?") from e
    df.columns = [str(c).strip() for c in df.columns]
    df.insert(0, checks.LINE, np.arange(2, len(df) + 2))
    return df


def read_file(loc: Located, cfg) -> tuple[pd.DataFrame, str]:
    path = loc.path
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path) and path.suffix.lower() != ".csv":
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{path}: not a readable zip archive ({e}); expected a zip holding "
                            "the CSV (truncated or corrupt download?)") from e
        with zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            member = loc.source.member or cfg.get("member")
            if member is None:
                csvs = [n for n in names if n.lower().endswith(".csv")]
                if len(csvs) != 1:
                    raise DataError(f"{path}: dataset.member not set and the zip holds "
                                    f"{len(csvs)} CSV files {csvs}; expected exactly one")
                member = csvs[0]
            matches = [n for n in names if n == member or n.endswith("/" + member)]
            if not matches:
                raise DataError(f"{path}: no member {member!r} (dataset.sources[].member); "
                                f"the zip holds {names}")
            where = f"{path}!{matches[0]}"
            try:
                data = zf.read(matches[0])
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise DataError(f"{where}: the compressed data is corrupt ({e}); expected a "
                                "complete zip (truncated or corrupt download?)") from e
        return _read_csv(io.BytesIO(data), where, cfg), where
    return _read_csv(path, str(path), cfg), str(path)


# ---------------------------------------------------------------------------- transforms


def _date_bound(value, key: str):
    if value is None:
        return None
    try:
        return pd.Timestamp(str(value))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {value!r} is not a date; expected e.g. '2000-09-01'") from e


def _choice(cfg, key: str, allowed: tuple[str, ...]) -> str:
    value = cfg.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"dataset.{key}: {value!r}; expected one of {list(allowed)}")
    return value


def in_time_order(df: pd.DataFrame, dates: pd.Series, cfg, where: str
                  ) -> tuple[pd.DataFrame, pd.Series]:
    """The rows oldest first, or a DataError; a repeated date is refused, naming the first.

    Every split, window and baseline assumes that a later row is a later time: rows taken
    in a newest-first file's order would train on the latest rows, test on the earliest
    and read every window backwards, without a sign. ``dataset.time_order``: ``sort``
    puts the rows in date order and says so once; ``strict`` refuses a file that is not.
    ``dataset.duplicate_dates``: ``error`` refuses two rows with one timestamp (which of
    them is the observation?); ``keep`` keeps both in file order and says how many.
    """
    column = cfg.get("date_column")
    order = _choice(cfg, "time_order", TIME_ORDERS)
    duplicates = _choice(cfg, "duplicate_dates", DUPLICATE_DATES)
    lines = df[checks.LINE].to_numpy()
    repeated = dates.duplicated(keep="first").to_numpy()
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero((dates == dates.iloc[i]).to_numpy())[0])
        if duplicates == "error":
            raise DataError(
                f"{where}, line {lines[i]}: date {dates.iloc[i]} in column {column!r} repeats "
                f"line {lines[first]} ({int(repeated.sum())} repeated date(s) in all); expected "
                "one row per timestamp. Remove the repeated rows, or set "
                "dataset.duplicate_dates=keep to keep them in file order")
        log.warning("%s: %d repeated date(s) in column %r kept (dataset.duplicate_dates=keep); "
                    "the first, %s, at line %d", where, int(repeated.sum()), column,
                    dates.iloc[i], lines[i])
    earlier = (dates.diff() < pd.Timedelta(0)).to_numpy()
    if not earlier.any():
        return df, dates
    i = int(np.flatnonzero(earlier)[0])
    newest_first = bool(dates.is_monotonic_decreasing)
    if order == "strict":
        raise DataError(
            f"{where}, line {lines[i]}: date {dates.iloc[i]} in column {column!r} comes before "
            f"the previous row's {dates.iloc[i - 1]}"
            + (" (the file runs newest first)" if newest_first else "")
            + "; expected rows oldest first (dataset.time_order=strict). Sort the file, or set "
              "dataset.time_order=sort")
    idx = np.argsort(dates.to_numpy(), kind="stable")
    log.info("%s: rows %s; sorted by %r, oldest first (dataset.time_order=sort)", where,
             "ran newest first" if newest_first else
             f"were not in date order (first at line {lines[i]})", column)
    return df.iloc[idx].reset_index(drop=True), dates.iloc[idx].reset_index(drop=True)


def check_date_span(df: pd.DataFrame, cfg, where: str) -> None:
    """``expected_dates: [first, last]``: the file covers exactly these dates.

    Checked while the file is validated, with its schema and row count, so that a file
    whose checksum differs from the reference's is judged on all three before it is used.
    """
    expected, column = cfg.get("expected_dates"), cfg.get("date_column")
    if not expected or not column:
        return
    want = [_date_bound(v, f"dataset.expected_dates[{i}]") for i, v in enumerate(expected)]
    checks.require_columns(df, [column], where, "date_column")
    dates = checks.parse_dates(df, column, cfg.get("date_format"), where)
    got = [dates.min(), dates.max()]
    if len(want) != 2 or got != want:
        raise DataError(f"{where}: dates run from {got[0].date()} to {got[1].date()}; expected "
                        f"{expected[0]} to {expected[1]} (dataset.expected_dates)")


def _derive(df: pd.DataFrame, specs, where: str) -> pd.DataFrame:
    for i, spec in enumerate(specs or []):
        key = f"dataset.derived[{i}]"
        op, col, name = spec.get("op"), spec.get("column"), spec.get("name")
        if op not in DERIVED_OPS:
            raise ConfigError(f"{key}.op: {op!r}; expected one of {list(DERIVED_OPS)}")
        if not name:
            raise ConfigError(f"{key}.name: missing; expected the new column's name")
        checks.require_columns(df, [col], where, f"derived[{i}].column")
        window, shift = int(spec.get("window", 1)), int(spec.get("shift", 1))
        if window < 1 or shift < 0:
            raise ConfigError(f"{key}: window {window}, shift {shift}; expected window >= 1, "
                              "shift >= 0")
        if op == "pct_change":
            # (x_t - x_{t-1}) / x_{t-1}, shifted by `shift` rows: the input twin of
            # target_transform=return, so a trending series is modelled in growth rates
            df[name] = df[col].pct_change(fill_method=None).shift(shift)
            continue
        # Row t gets the mean of rows t-shift-window+1 .. t-shift: with shift >= 1 only the
        # past, so a window ending at the target row cannot see the target's own value.
        df[name] = df[col].rolling(window, min_periods=window).mean().shift(shift)
    return df


def statsmodels_frame(cfg) -> tuple[pd.DataFrame, str]:
    """A series that statsmodels ships, as a table with a ``date`` column when it has one."""
    import importlib

    spec = cfg.statsmodels
    name = spec.get("dataset")
    where = f"statsmodels.datasets.{name}"
    try:
        module = importlib.import_module(where)
    except ImportError as e:
        raise ConfigError(f"dataset.statsmodels.dataset: {name!r} is not a statsmodels dataset "
                          f"({e}); expected e.g. 'co2', 'nile', 'sunspots'") from e
    df = module.load_pandas().data
    df = df.reset_index(names="date") if isinstance(df.index, pd.DatetimeIndex) else (
        df.reset_index(drop=True))
    df.columns = [str(c) for c in df.columns]
    names = spec.get("columns")
    if names:
        if len(names) != len(df.columns):
            raise ConfigError(f"dataset.statsmodels.columns: {len(names)} names for the "
                              f"{len(df.columns)} columns {list(df.columns)} of {where}")
        df.columns = [str(c) for c in names]
    df.insert(0, checks.LINE, np.arange(1, len(df) + 1))
    return df, where


def stack(df: pd.DataFrame, columns, name: str, where: str) -> pd.DataFrame:
    """One row per (row, column), row by row: a year-by-month table becomes a monthly series."""
    columns = [str(c) for c in columns]
    checks.require_columns(df, columns, where, "stack_columns")
    values = df[columns].to_numpy().reshape(-1)
    lines = np.repeat(df[checks.LINE].to_numpy(), len(columns))
    return pd.DataFrame({checks.LINE: lines, name: values})


def load_table(cfg, data_dir: Path) -> Table:
    """Reads and validates the file, returns the processed, unscaled series."""
    df, where = _read_frame(cfg, data_dir)
    rows_in_file = len(df)
    if len(df) == 0:
        raise DataError(f"{where}: no data rows; expected a header and at least one row")
    df, dates = _rows_in_date_range(df, cfg, where)
    rows_selected = len(df)
    df, dates, dropped = _drop_flagged_rows(df, dates, cfg, where)
    column, transform, units = _target_column(df, cfg, where)
    features, derived_names = _feature_names(df, cfg)
    num, missing, interpolated = _numeric_frame(df, cfg, features, derived_names, column, where)
    level, tgt, target_name = _target_series(num, column, transform)
    first_full = _first_full_row(num, derived_names, level, transform)

    defined = num[features].notna().all(axis=1) & tgt.notna()
    keep = np.arange(len(num)) >= first_full
    lines = df[checks.LINE].to_numpy()
    if missing == "drop":
        keep &= defined.to_numpy()
    feats = num[features].to_numpy(dtype=np.float64)[keep]
    target_values = tgt.to_numpy(dtype=np.float64)[keep]
    checks.check_finite(feats, features, lines[keep], where, "features")
    checks.check_finite(target_values[:, None], [target_name], lines[keep], where, "target")
    if len(feats) == 0:
        raise DataError(f"{where}: no rows left after the date range, drop_rows and derived "
                        "features; expected at least one complete row")
    return Table(
        path=where,
        dates=(dates[keep].reset_index(drop=True) if dates is not None else pd.Series(
            np.arange(len(feats)))),
        features=feats, target=target_values, lines=lines[keep], feature_names=features,
        target_name=target_name, units=units, rows_in_file=rows_in_file,
        rows_selected=rows_selected, rows_dropped=dropped, rows_leading=int(first_full),
        values_interpolated=interpolated,
    )


def _read_frame(cfg, data_dir: Path) -> tuple[pd.DataFrame, str]:
    """The raw table and where it came from, validated before any row is touched so a wrong
    file fails with its own name in the message."""
    if cfg.get("statsmodels"):
        df, where = statsmodels_frame(cfg)
        if cfg.get("expected_rows") is not None:
            checks.check_rows(df, cfg.get("expected_rows"), where)
    else:
        sources, root, subdir = _sources(cfg, data_dir)

        def parse(loc: Located) -> tuple[pd.DataFrame, str]:
            df, where = read_file(loc, cfg)
            if cfg.get("expected_columns"):
                checks.check_schema(df, list(cfg.expected_columns), where)
            checks.check_rows(df, cfg.get("expected_rows"), where)
            check_date_span(df, cfg, where)
            return df, where

        (df, where), _ = load_verified(f"dataset {cfg.get('name')!r}", sources, root, subdir,
                                       parse)
    if cfg.get("stack_columns"):
        df = stack(df, cfg.stack_columns, str(cfg.get("stack_name") or "value"), where)
    return df, where


def _rows_in_date_range(df: pd.DataFrame, cfg, where: str
                        ) -> tuple[pd.DataFrame, pd.Series | None]:
    """Rows in time order within ``date_range``, with their dates; a series without a date
    column keeps its rows as they are and has no dates."""
    date_col = cfg.get("date_column")
    dates = None
    if date_col:
        checks.require_columns(df, [date_col], where, "date_column")
        dates = checks.parse_dates(df, date_col, cfg.get("date_format"), where)
        df, dates = in_time_order(df, dates, cfg, where)
        start, end = (list(cfg.get("date_range") or []) + [None, None])[:2]
        lo, hi = _date_bound(start, "dataset.date_range[0]"), _date_bound(end, "dataset.date_range[1]")
        mask = pd.Series(True, index=df.index)
        if lo is not None:
            mask &= dates >= lo
        if hi is not None:
            mask &= dates <= hi
        if not mask.any():
            raise ConfigError(
                f"dataset.date_range: [{start}, {end}] selects no rows of {where}; the file "
                f"covers {dates.min()} to {dates.max()}"
            )
        df, dates = df[mask], dates[mask]
    elif cfg.get("date_range"):
        raise ConfigError("dataset.date_range: set, but dataset.date_column is null; expected "
                          "the name of the date column")
    return df, dates


def _drop_flagged_rows(df: pd.DataFrame, dates: pd.Series | None, cfg, where: str
                       ) -> tuple[pd.DataFrame, pd.Series | None, int]:
    """Rows without the ``drop_rows`` flags, their dates, and how many went (for the notes)."""
    dropped = 0
    for i, rule in enumerate(cfg.get("drop_rows") or []):
        col = rule.get("column")
        checks.require_columns(df, [col], where, f"drop_rows[{i}].column")
        values = checks.to_numeric(df, [col], where, f"drop_rows[{i}].column")[col]
        hit = values == float(rule.get("equals"))
        dropped += int(hit.sum())
        df = df[~hit]
        if dates is not None:
            dates = dates[~hit]
    return df, dates, dropped


def _target_column(df: pd.DataFrame, cfg, where: str) -> tuple[str, str, str | None]:
    """The target's column, transform and units; a preset names all three so a dataset can
    offer several targets under one short name."""
    presets = cfg.get("target_presets") or {}
    target = cfg.get("target")
    preset = presets.get(target)
    if preset is not None:
        column, transform = preset.get("column"), preset.get("transform", "level")
    else:
        column, transform = target, cfg.get("target_transform", "level")
    units = (preset or {}).get("units") or (
        "fraction" if transform == "return" else cfg.get("units"))
    if not column:
        raise ConfigError("dataset.target: missing; expected the target column's name"
                          + (f" or one of {list(presets)}" if presets else ""))
    if transform not in TRANSFORMS:
        raise ConfigError(f"dataset.target_transform: {transform!r}; expected one of "
                          f"{list(TRANSFORMS)}")
    checks.require_columns(df, [column], where, "target")
    return column, transform, units


def _feature_names(df: pd.DataFrame, cfg) -> tuple[list[str], list[str]]:
    """The input columns and the derived ones among them; without ``features`` every column
    but the line number and the date is an input."""
    features = cfg.get("features")
    derived_names = [d.get("name") for d in (cfg.get("derived") or [])]
    if features is None:
        excluded = {checks.LINE, cfg.get("date_column")}
        features = [c for c in df.columns if c not in excluded] + derived_names
    features = [str(f) for f in features]
    if not features:
        raise ConfigError("dataset.features: empty; expected at least one input column")
    return features, derived_names


def _numeric_frame(df: pd.DataFrame, cfg, features: list[str], derived_names: list[str],
                   column: str, where: str) -> tuple[pd.DataFrame, str, int]:
    """The numeric columns with derived features added, the ``missing`` policy, and how many
    values it interpolated (for the notes)."""
    raw_needed = [c for c in features if c not in derived_names]
    checks.require_columns(df, raw_needed, where, "features")
    numeric_cols = list(dict.fromkeys(raw_needed + [column] + [
        d.get("column") for d in (cfg.get("derived") or [])]))
    checks.require_columns(df, numeric_cols, where, "derived[].column")
    num = checks.to_numeric(df, numeric_cols, where, "features")
    checks.check_not_empty_columns(num, numeric_cols, where, "features")
    missing = cfg.get("missing", "error")
    if missing not in MISSING:
        raise ConfigError(f"dataset.missing: {missing!r}; expected one of {list(MISSING)}")
    interpolated = 0
    if missing == "interpolate":
        # gaps filled linearly between their neighbours (in row order: rows are equally
        # spaced in time), the ends held at the nearest value; counted in the notes
        interpolated = int(num[numeric_cols].isna().sum().sum())
        num[numeric_cols] = num[numeric_cols].interpolate(limit_direction="both")
    num = _derive(num, cfg.get("derived"), where)
    return num, missing, interpolated


def _target_series(num: pd.DataFrame, column: str, transform: str
                   ) -> tuple[pd.Series, pd.Series, str]:
    """The target column's level, the transformed target and its name."""
    level = num[column]
    if transform == "return":
        # R_t = (C_t - C_{t-1}) / C_{t-1}: a function of rows t-1 and t only.
        tgt = (level - level.shift(1)) / level.shift(1)
        target_name = f"return({column})"
    else:
        tgt = level
        target_name = column
    return level, tgt, target_name


def _first_full_row(num: pd.DataFrame, derived_names: list[str], level: pd.Series,
                    transform: str) -> int:
    """The first row that rolling means and returns leave defined; the rows before it go under
    every ``missing`` policy, because their values do not exist rather than being missing."""
    lead_gap = num[derived_names].isna().any(axis=1) if derived_names else pd.Series(
        False, index=num.index)
    if transform == "return":
        lead_gap |= level.shift(1).isna() & level.notna()
    first_full = int(np.argmax(~lead_gap.to_numpy())) if len(num) else 0
    if lead_gap.all():
        first_full = len(num)
    return first_full


# -------------------------------------------------------------------------------- splits


def _row_range(value, n: int, key: str) -> tuple[int, int]:
    if value is None or len(value) != 2:
        raise ConfigError(f"{key}: {value!r}; expected [first_row, end_row) e.g. [0, 200000]")
    lo, hi = value
    lo, hi = int(lo or 0), n if hi is None else int(hi)
    return lo, min(hi, n)


def split_rows(cfg, table: Table) -> dict[str, tuple[int, int]]:
    """Half-open row ranges of the target rows of each split, in time order."""
    sp = cfg.get("split")
    if sp is None:
        raise ConfigError("dataset.split: missing; expected {by: rows|fraction|date, train, test}")
    n, by = len(table.target), sp.get("by", "rows")
    if by not in SPLIT_BY:
        raise ConfigError(f"dataset.split.by: {by!r}; expected one of {list(SPLIT_BY)}")
    if by == "rows":
        out = _ranges_by_rows(sp, n)
    elif by == "fraction":
        out = _ranges_by_fraction(sp, n)
    else:
        out = _ranges_by_date(sp, n, table.dates)
    for name in ("train", "test"):
        if name not in out:
            raise ConfigError(f"dataset.split.{name}: missing; expected a row range, fraction or "
                              "date range")
    out = _with_val_from_train(sp, out)
    _check_split_order(out, n)
    return out


def _ranges_by_rows(sp, n: int) -> dict[str, tuple[int, int]]:
    """The ranges as given in row numbers, cut at the series' end."""
    return {name: _row_range(sp[name], n, f"dataset.split.{name}")
            for name in SPLIT_NAMES if sp.get(name) is not None}


def _ranges_by_fraction(sp, n: int) -> dict[str, tuple[int, int]]:
    """Consecutive ranges from fractions of the series, in split order from its start."""
    out: dict[str, tuple[int, int]] = {}
    start = 0.0
    for name in SPLIT_NAMES:
        f = sp.get(name)
        if f is None:
            continue
        if not 0 < float(f) <= 1:
            raise ConfigError(f"dataset.split.{name}: {f!r}; expected a fraction in (0, 1]")
        lo, hi = round(start * n), round(min(start + float(f), 1.0) * n)
        out[name] = (lo, hi)
        start += float(f)
    if start > 1 + 1e-9:
        raise ConfigError(f"dataset.split: fractions sum to {start:g}; expected at most 1")
    return out


def _ranges_by_date(sp, n: int, dates: pd.Series) -> dict[str, tuple[int, int]]:
    """The rows from the first to the last whose date falls in each split's date range."""
    out: dict[str, tuple[int, int]] = {}
    for name in SPLIT_NAMES:
        rng = sp.get(name)
        if rng is None:
            continue
        lo_d = _date_bound(rng[0], f"dataset.split.{name}[0]")
        hi_d = _date_bound(rng[1], f"dataset.split.{name}[1]")
        mask = np.ones(n, dtype=bool)
        if lo_d is not None:
            mask &= (dates >= lo_d).to_numpy()
        if hi_d is not None:
            mask &= (dates <= hi_d).to_numpy()
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            raise ConfigError(f"dataset.split.{name}: {list(rng)} selects no rows; the series "
                              f"covers {dates.min()} to {dates.max()}")
        out[name] = (int(idx[0]), int(idx[-1]) + 1)
    return out


def _with_val_from_train(sp, out: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The ranges with validation cut from the end of training when ``val_from_train`` asks,
    so validation stays later in time than every training row."""
    vft = sp.get("val_from_train")
    if vft:
        if "val" in out:
            raise ConfigError("dataset.split: both val and val_from_train are set; expected one")
        if not 0 < float(vft) < 1:
            raise ConfigError(f"dataset.split.val_from_train: {vft!r}; expected a fraction in (0, 1)")
        lo, hi = out["train"]
        cut = hi - max(1, round((hi - lo) * float(vft)))
        out["train"], out["val"] = (lo, cut), (cut, hi)
    if "val" not in out:
        raise ConfigError("dataset.split.val: missing; expected a val range or val_from_train")
    return out


def _check_split_order(out: dict[str, tuple[int, int]], n: int) -> None:
    """Refuses empty splits and splits out of time order: a later split that overlaps an
    earlier one would test on rows the model trained or was selected on."""
    names = list(SPLIT_NAMES)
    order = [out[k] for k in names]
    for (name, (lo, hi)) in zip(names, order, strict=True):
        if hi <= lo:
            raise ConfigError(f"dataset.split.{name}: rows [{lo}, {hi}) are empty (the series has "
                              f"{n} rows); expected a non-empty range")
    for i in range(2):
        (a, (_, hi_a)), (b, (lo_b, _)) = (names[i], order[i]), (names[i + 1], order[i + 1])
        if lo_b < hi_a:
            raise ConfigError(f"dataset.split: {b} starts at row {lo_b}, before {a} ends at row "
                              f"{hi_a}; expected train, val, test in time order without overlap")


# ---------------------------------------------------------------------------- scaling


def _fit(kind: str, values: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` with ``scaled = (x - offset) / scale``."""
    if kind not in SCALERS:
        raise ConfigError(f"{key}: {kind!r}; expected one of {list(SCALERS)}")
    if kind == "none":
        return np.zeros(values.shape[1:]), np.ones(values.shape[1:])
    if kind == "standard":
        offset, scale = values.mean(0), values.std(0)
    else:
        offset, scale = values.min(0), values.max(0) - values.min(0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant training column stays finite
    return offset, scale


# ---------------------------------------------------------------------------- build


def window_params(cfg) -> tuple[int, int, int]:
    lookback, step, delay = cfg.get("lookback"), cfg.get("step", 1), cfg.get("delay", 0)
    for key, v in (("lookback", lookback), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"dataset.{key}: {v!r}; expected a positive integer")
    if isinstance(delay, bool) or not isinstance(delay, int):
        raise ConfigError(f"dataset.delay: {delay!r}; expected an integer")
    if lookback % step:
        raise ConfigError(f"dataset.lookback: {lookback} is not a multiple of dataset.step "
                          f"({step}); expected lookback = steps x step")
    if delay < -step:
        raise ConfigError(f"dataset.delay: {delay}; expected >= -step ({-step}): a smaller delay "
                          "puts the target before the window's last row, so inputs would "
                          "contain rows after the target")
    return lookback, step, delay


def anchors_for(lo: int, hi: int, lookback: int, step: int, delay: int, context: str,
                naive_lag: int | None = None) -> torch.Tensor:
    """Anchors of the samples whose target rows lie in ``[lo, hi)`` and whose window and
    naive forecast both lie inside the rows the context allows."""
    start = lo if context == "within_split" else 0
    naive_lag = naive_lag or max(delay + step, 1)
    t0 = max(lo, start + max(delay + lookback, naive_lag))
    return torch.arange(t0, max(t0, hi)) - delay


def seasonal_period(cfg) -> int | None:
    season = cfg.get("season")
    if season is None:
        return None
    if isinstance(season, bool) or not isinstance(season, int) or season < 2:
        raise ConfigError(f"dataset.season: {season!r}; expected an integer >= 2 (rows per "
                          "season, e.g. 12 for monthly data) or null")
    return season


def seasonal_lag(lag: int, season: int | None) -> int:
    """The naive forecast's lag: ``lag`` rows, or the fewest whole seasons that reach at
    least as far back (a forecast may only use values the model could have seen)."""
    if not season:
        return lag
    return season * -(-lag // season)


def in_sample_naive_mae(y: np.ndarray, m: int) -> float | None:
    """MASE's denominator: the mean absolute error of the lag-``m`` naive forecast over the
    training rows (Hyndman & Koehler 2006); None when the rows are too few or constant."""
    if len(y) <= m:
        return None
    mae = float(np.abs(y[m:] - y[:-m]).mean())
    return mae if mae > 0 else None


def build(cfg, data_dir: Path) -> Prepared:
    lookback, step, delay = window_params(cfg)
    context = cfg.get("window_context", "within_split")
    if context not in CONTEXTS:
        raise ConfigError(f"dataset.window_context: {context!r}; expected one of {list(CONTEXTS)}")
    table = load_table(cfg, data_dir)
    ranges = split_rows(cfg, table)

    scaling = cfg.get("scaling") or {}
    fit_on = scaling.get("fit_rows", "train")
    if fit_on not in ("train", "all"):
        raise ConfigError(f"dataset.scaling.fit_rows: {fit_on!r}; expected 'train' or 'all'")
    lo, hi = ranges["train"] if fit_on == "train" else (0, len(table.target))
    f_off, f_scale = _fit(scaling.get("features", "standard"), table.features[lo:hi],
                          "dataset.scaling.features")
    t_off, t_scale = _fit(scaling.get("target", "standard"), table.target[lo:hi, None],
                          "dataset.scaling.target")
    features = torch.from_numpy(((table.features - f_off) / f_scale).astype(np.float32))
    target = torch.from_numpy(((table.target - t_off[0]) / t_scale[0]).astype(np.float32))

    season = seasonal_period(cfg)
    naive_lag = seasonal_lag(max(delay + step, 1), season)
    mase_scale = in_sample_naive_mae(target[slice(*ranges["train"])].numpy(), season or 1)
    splits, counts = [], {}
    for name in ("train", "val", "test"):
        s_lo, s_hi = ranges[name]
        anchors = anchors_for(s_lo, s_hi, lookback, step, delay, context, naive_lag)
        if len(anchors) == 0:
            raise ConfigError(
                f"dataset.lookback: a window of {lookback} rows (+ delay {delay}) does not fit the "
                f"{name} split of {table.path} (rows [{s_lo}, {s_hi}), {s_hi - s_lo} rows, "
                f"window_context={context}); expected a shorter lookback/delay or a longer split"
            )
        splits.append(SeriesWindows(features, target, anchors, lookback, step, delay, naive_lag))
        counts[name] = len(anchors)
    info = DatasetInfo(
        name=cfg.name, task="regression", metric=cfg.metric, direction=cfg.direction,
        seq_len=lookback // step, n_features=len(table.feature_names), units=table.units,
        target_scale=float(t_scale[0]), target_offset=float(t_off[0]),
        feature_names=tuple(table.feature_names), target_name=table.target_name,
        mase_scale=mase_scale,
        notes={
            "naive": (f"seasonal naive (lag {naive_lag} rows, season {season})" if season
                      else f"persistence (lag {naive_lag} rows)"),
            "values_interpolated": str(table.values_interpolated),
            "source": table.path, "rows_in_file": str(table.rows_in_file),
            "rows_selected": str(table.rows_selected), "rows_dropped": str(table.rows_dropped),
            "rows_leading": str(table.rows_leading), "rows": str(len(table.target)),
            **{f"rows_{k}": f"[{a}, {b})" for k, (a, b) in ranges.items()},
            **{f"samples_{k}": str(v) for k, v in counts.items()},
            "first_date": str(table.dates.iloc[0]), "last_date": str(table.dates.iloc[-1]),
        },
    )
    return Prepared(info, *splits)
