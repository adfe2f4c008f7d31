"""Rows of a dated series are used oldest first, whatever order the file has.

The real SBUX history (tests/fixtures) is written newest first, shuffled, or with rows
repeated, and loaded through the generic CSV config as a user would.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch

from bench.data import build
from bench.data.base import DataError
from bench.data.series import load_table, split_rows
from tests.support.data import FIXTURES, dataset_cfg

SBUX = FIXTURES / "sbux" / "SBUX.csv"
FEATURES = ["Open", "High", "Low", "Close", "Adj Close"]


def csv_cfg(path, **overrides):
    return dataset_cfg("csv", path=str(path), date_column="Date", date_format="%Y-%m-%d",
                       target="Volume", features=FEATURES, units="shares", lookback=5,
                       **overrides)


def write(tmp_path, frame: pd.DataFrame, name="series.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def split_dates(cfg, tmp_path):
    table = load_table(cfg, tmp_path)
    ranges = split_rows(cfg, table)
    return table, {k: table.dates.iloc[lo:hi] for k, (lo, hi) in ranges.items()}


def assert_time_ordered(parts):
    assert parts["train"].max() < parts["val"].min()
    assert parts["val"].max() < parts["test"].min()
    for dates in parts.values():
        assert dates.is_monotonic_increasing


def batches(prepared):
    return {name: getattr(prepared, name)[torch.arange(len(getattr(prepared, name)))]
            for name in ("train", "val", "test")}


@pytest.mark.parametrize("order", ["newest_first", "shuffled"])
def test_rows_out_of_order_are_sorted_and_split_in_time(tmp_path, caplog, order):
    original = pd.read_csv(SBUX)
    messy = original.iloc[::-1] if order == "newest_first" else original.sample(
        frac=1.0, random_state=0)
    path = write(tmp_path, messy)
    with caplog.at_level(logging.INFO, logger="bench.data.series"):
        table, parts = split_dates(csv_cfg(path), tmp_path)
    assert table.dates.is_monotonic_increasing and len(table.dates) == len(original) == 253
    assert_time_ordered(parts)
    said = [r.getMessage() for r in caplog.records if "time_order=sort" in r.getMessage()]
    assert len(said) == 1
    assert ("ran newest first" if order == "newest_first" else "were not in date order") in said[0]

    # the same windows, targets and baselines as the file in its own (oldest first) order
    ref = write(tmp_path, original, "ordered.csv")
    got, want = batches(build(csv_cfg(path), tmp_path)), batches(build(csv_cfg(ref), tmp_path))
    for split in want:
        for key in want[split]:
            assert torch.equal(got[split][key], want[split][key]), (split, key)


def test_strict_order_refuses_a_newest_first_file(tmp_path):
    path = write(tmp_path, pd.read_csv(SBUX).iloc[::-1])
    with pytest.raises(DataError) as e:
        load_table(csv_cfg(path, time_order="strict"), tmp_path)
    assert str(e.value) == (
        f"{path}, line 3: date 2020-12-09 00:00:00 in column 'Date' comes before the previous "
        "row's 2020-12-10 00:00:00 (the file runs newest first); expected rows oldest first "
        "(dataset.time_order=strict). Sort the file, or set dataset.time_order=sort")


def test_repeated_dates_are_refused_naming_the_first(tmp_path):
    original = pd.read_csv(SBUX)
    path = write(tmp_path, pd.concat([original, original.tail(3)]))  # header is line 1
    with pytest.raises(DataError) as e:
        load_table(csv_cfg(path), tmp_path)
    assert str(e.value).startswith(
        f"{path}, line 255: date 2020-12-08 00:00:00 in column 'Date' repeats line 252 "
        "(3 repeated date(s) in all); expected one row per timestamp.")
    # reversed and repeated: the first repeat in file order is named
    path = write(tmp_path, pd.concat([original, original.tail(3)]).iloc[::-1], "both.csv")
    with pytest.raises(DataError, match=r"line 5: date 2020-12-10 00:00:00 .* repeats line 2 "):
        load_table(csv_cfg(path), tmp_path)


def test_repeated_dates_kept_on_request_stay_in_time_order(tmp_path, caplog):
    original = pd.read_csv(SBUX)
    path = write(tmp_path, pd.concat([original, original.tail(3)]).iloc[::-1])
    with caplog.at_level(logging.INFO, logger="bench.data.series"):
        table, parts = split_dates(csv_cfg(path, duplicate_dates="keep"), tmp_path)
    assert len(table.dates) == 256 and table.dates.is_monotonic_increasing
    assert parts["train"].max() <= parts["val"].min() <= parts["val"].max() <= parts["test"].min()
    assert any("3 repeated date(s)" in r.getMessage() for r in caplog.records)


def test_bad_settings_name_the_key(tmp_path):
    from bench.data.base import ConfigError

    with pytest.raises(ConfigError, match=r"dataset.time_order: 'newest'; expected one of "
                                          r"\['sort', 'strict'\]"):
        load_table(csv_cfg(SBUX, time_order="newest"), tmp_path)


def test_the_reference_configs_keep_their_row_order(real_data_dir):
    """The committed SBUX and Samsung files are oldest first already: nothing moves."""
    for name in ("sbux", "samsung"):
        cfg = dataset_cfg(name)
        table = load_table(cfg, real_data_dir)
        assert table.dates.is_monotonic_increasing
        assert (pd.Series(table.lines).diff().dropna() > 0).all()
