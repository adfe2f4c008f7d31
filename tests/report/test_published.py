"""The published references the report prints beside archive datasets."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest

from bench.errors import DataError
from bench.report import markdown, published
from bench.report.formatting import Units
from bench.report.model import LeaderboardRow

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reference"


def test_the_shipped_table_holds_the_published_fold0_scores():
    t = published.read()
    got = {(r.dataset, r.method): r.fold0 for r in t.itertuples()}
    # 1NN-DTW on the archive's default split, as the bake-off redux publishes it
    assert got[("ArrowHead", "1NN-DTW")] == pytest.approx(0.702857)
    assert got[("GunPoint", "1NN-DTW")] == pytest.approx(0.906667)
    assert got[("OSULeaf", "1NN-DTW")] == pytest.approx(0.590909)
    assert got[("ItalyPowerDemand", "1NN-DTW")] == pytest.approx(0.950437)
    assert got[("Covid3Month", "InceptionTime")] == pytest.approx(0.055643)
    assert set(t["method"]) == set(published.METHODS)


def test_every_row_is_the_line_it_names_in_the_shared_files():
    """Each row cites a file and line; where the shared files are present, that line says the
    same (a copy that drifted from its source would print a number nobody published)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    lines = {f.name: f.read_text().splitlines() for f in SHARED.glob("*.csv")}
    for r in published.read().itertuples():
        fields_ = lines[r.source_file][r.source_line - 1].split(",")
        assert r.dataset in fields_ and float(fields_[-3]) == r.fold0, (r.dataset, r.method)


def _bad(tmp_path, row: str) -> Path:
    p = tmp_path / "published.csv"
    p.write_text("# a comment\n" + ",".join(published.COLUMNS) + "\n" + row + "\n")
    return p


@pytest.mark.parametrize("row, says", [
    ("GunPoint,classification,accuracy,HC2,0.99,x.csv,3", "method 'HC2'"),
    ("GunPoint,classification,accuracy,ROCKET,1.2,x.csv,3", "fold0 '1.2'"),
    ("GunPoint,classification,rmse,ROCKET,0.2,x.csv,3", "task 'classification' with metric 'rmse'"),
    ("GunPoint,classification,accuracy,ROCKET,0.9,x.csv,line", "source_line 'line'"),
])
def test_a_bad_row_names_the_file_line_and_field(tmp_path, row, says):
    p = _bad(tmp_path, row)
    with pytest.raises(DataError, match=f"{p.name}, line 3: {says}"):
        published.read(p)


def _row(arch: str, mean: float) -> LeaderboardRow:
    values = {f.name: math.nan for f in fields(LeaderboardRow)}
    values.update(arch=arch, candidate=arch != "naive", anchor=False, status="", n=5, mean=mean,
                  beats_naive=False)
    return LeaderboardRow(**values)


def test_the_gap_is_the_best_recurrent_cell_not_the_best_model():
    board = [_row("mlp", 0.95), _row("gru-stacked", 0.80), _row("lstm-single", 0.60),
             _row("naive", 0.33)]
    p = published.section("GunPoint", "accuracy", "maximize", board)
    assert p is not None and p.best_recurrent == "gru-stacked"
    gap = {s.method: s.gap for s in p.scores}
    assert [s.method for s in p.scores] == list(published.METHODS)
    assert gap["1NN-DTW"] == pytest.approx(0.80 - 0.906667)
    assert published.section("Tecator", "rmse", "minimize", board) is None


def test_an_error_metric_takes_the_lowest_recurrent_mean():
    board = [_row("rnn-single", 0.04), _row("gru-single", 0.06)]
    p = published.section("Covid3Month", "rmse", "minimize", board)
    assert p is not None and p.best_recurrent == "rnn-single"
    assert {s.method: s.gap for s in p.scores}["ROCKET"] == pytest.approx(0.04 - 0.038893)


def test_the_readme_shows_each_score_with_its_source_and_signed_gap():
    from types import SimpleNamespace

    p = published.section("ArrowHead", "accuracy", "maximize", [_row("lstm-stacked", 0.3663)])
    s = SimpleNamespace(published=p, units=Units("accuracy", ""), direction="maximize")
    text = "\n".join(markdown.published(s))  # type: ignore[arg-type]
    assert "| 1NN-DTW | 70.29 | -33.66 points | `tsc_bakeoff_2023_accuracy.csv:122` |" in text
    assert "`lstm-stacked` (36.63), the best recurrent cell" in text
