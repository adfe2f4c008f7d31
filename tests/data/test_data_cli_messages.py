"""``python -m bench.data`` as a user reads it, and a re-downloaded SBUX file."""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pytest

from bench.data import build
from bench.data.base import DataError
from bench.data.cli import main
from tests.support.data import FIXTURES, dataset_cfg

SBUX_SHA256 = "4293b10a3bc217bcc3bd02dd2032b0e1224a61c75bf943cb909aca9a65cb093c"
JENA_URL = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "jena_climate_2009_2016.csv.zip")


def test_fetch_names_the_dataset_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["--data-dir", str(tmp_path), "fetch", "jena"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("jena data: no usable copy found. Expected "
                          "'jena_climate_2009_2016.csv' or 'jena_climate_2009_2016.csv.zip'")
    assert "jena data: jena data" not in out
    assert "Automatic download failed: BENCH_OFFLINE is set" in out


def test_list_shows_the_folder_as_set_and_wraps_rather_than_cuts(tmp_path, capsys, monkeypatch):
    (tmp_path / "real" / "sbux").mkdir(parents=True)
    shutil.copy(FIXTURES / "sbux" / "SBUX.csv", tmp_path / "real" / "sbux" / "SBUX.csv")
    link = tmp_path / "my-data"
    link.symlink_to(tmp_path / "real")
    monkeypatch.setenv("BENCH_DATA_DIR", str(link))
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["list", "sbux", "jena"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "…" not in out  # nothing cut
    assert f"data_dir: {link} (BENCH_DATA_DIR)" in " ".join(x.strip() for x in lines[:3])
    rows = table_rows(out)
    assert rows["sbux"][3] == f"{link}/sbux/SBUX.csv" and rows["sbux"][5] == "sha256ok"
    assert rows["jena"][3] == "missing" and rows["jena"][5] == f"fetch:{JENA_URL}"
    assert str(tmp_path / "real") not in out


def table_rows(out: str) -> dict[str, list[str]]:
    """A rich table's body rows by first cell, each cell's folded pieces joined (spaces gone)."""
    rows: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[0]:
            current = rows.setdefault(cells[0], [""] * len(cells))
        for i, c in enumerate(cells):
            current[i] += c.replace(" ", "")
    return rows


def _sbux_copy(tmp_path, frame: pd.DataFrame):
    (tmp_path / "sbux").mkdir()
    frame.to_csv(tmp_path / "sbux" / "SBUX.csv", index=False)


def test_a_redownloaded_sbux_with_the_same_dates_and_rows_is_used_with_a_warning(tmp_path,
                                                                               caplog):
    frame = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")
    frame["Adj Close"] = (frame["Adj Close"] * 0.98).round(6)  # re-adjusted for a dividend
    _sbux_copy(tmp_path, frame)
    with caplog.at_level(logging.WARNING, logger="bench.data.download"):
        p = build(dataset_cfg("sbux"), tmp_path)
    assert (len(p.train), len(p.val), len(p.test)) == (179, 20, 53)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"sha256 mismatch: expected {SBUX_SHA256}, got " in warning
    assert "columns, rows and dates match the reference's, so it is used" in warning


def test_a_different_sbux_history_is_refused_with_the_way_to_use_it(tmp_path):
    frame = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")
    later = frame.iloc[1:].copy()  # one day later: 253 rows, other dates
    extra = frame.iloc[[-1]].assign(Date="2020-12-11")
    _sbux_copy(tmp_path, pd.concat([later, extra]))
    with pytest.raises(DataError) as e:
        build(dataset_cfg("sbux"), tmp_path)
    text = str(e.value)
    assert f"SBUX.csv: sha256 mismatch: expected {SBUX_SHA256}" in text
    assert "dates run from 2019-12-12 to 2020-12-11; expected 2019-12-11 to 2020-12-10" in text
    assert f"python -m bench dataset=csv dataset.path={tmp_path / 'sbux' / 'SBUX.csv'}" in text
