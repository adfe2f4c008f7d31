"""The tidy record: relative paths, exact round trips, and a rebuild from an earlier results.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import collect, legacy
from bench.results import record
from tests.support.records import hand_record

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "reports" / "cpu"


def test_paths_are_written_relative_to_the_project():
    root = Path("/srv/bench")
    assert record.relative_paths("sqlite:////srv/bench/mlflow.db", root) == "sqlite:///mlflow.db"
    assert record.relative_paths("/srv/bench/x/y", root) == "x/y"
    assert record.relative_paths("/srv/data/jena", root) == "../data/jena"
    assert record.relative_paths("data_dir=/srv/bench/data", root) == "data_dir=data"
    assert record.relative_paths("http://host:5000/api", root) == "http://host:5000/api"
    assert record.relative_paths("postgresql://u:***@h/db", root) == "postgresql://u:***@h/db"


def test_record_round_trips_exactly(tmp_path):
    df = pd.DataFrame([
        {"kind": "final", "study": "s", "dataset": "d", "dataset_name": "d", "arch": "gru-single",
         "seed": 0, "status": "FINISHED", "pruned": False, "score": 0.1 + 0.2,
         "metric:test/accuracy": 0.7936000227928162, "param:model.hidden_size": "32",
         "curve:val/accuracy": "[0.5, 0.6]", "run_id": "r1"},
        {"kind": "session", "study": "s", "run_id": "s1", "definition": "name: s\nseeds: 2\n"},
    ])
    a = record.write(df, tmp_path / "a")
    back = record.read(a)
    assert back.loc[back["kind"] == "final", "score"].iloc[0] == 0.1 + 0.2   # repr round trip
    b = record.write(back, tmp_path / "b")
    assert sorted(p.name for p in a.iterdir()) == ["_study.csv", "d.csv"]
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes()
    assert list(back["kind"]) == ["session", "final"]
    assert record.curves(back.iloc[1]) == {"val/accuracy": [(0, 0.5), (1, 0.6)]}


def _run(ds: str, kind: str, run_id: str, **kw) -> dict:
    return {"kind": kind, "study": "s", "dataset": ds, "dataset_name": ds, "arch": "gru-single",
            "seed": 0, "status": "FINISHED", "run_id": run_id, **kw}


def test_record_is_a_folder_of_small_shards_that_reads_back_whole(tmp_path):
    """One file per dataset and one for its trials: each stays small enough to review and
    diff, and a session that adds one dataset rewrites only that dataset's files."""
    df = pd.DataFrame([
        {"kind": "session", "study": "s", "run_id": "s1", "definition": "name: s\n"},
        _run("a", "final", "a1", score=0.5, **{"param:model.hidden_size": "32"}),
        _run("a", "trial", "a#0", trial=0, value=0.4, trial_params='{"x": 1}'),
        _run("b", "final", "b1", score=0.7, **{"curve:val/loss": "[1.0, 0.5]"}),
        _run("b", "tune", "b-tune"),
    ])
    folder = record.write(df, tmp_path / "record")
    assert sorted(p.name for p in folder.iterdir()) == [
        "_study.csv", "a.csv", "a.trials.csv", "b.csv"]
    # a shard lists only the columns it has values in
    assert "param:model.hidden_size" not in pd.read_csv(folder / "b.csv").columns
    assert "curve:val/loss" not in pd.read_csv(folder / "a.csv").columns
    back = record.read(folder)
    assert list(back["run_id"]) == list(record.tidy(df)["run_id"])
    assert back.set_index("run_id").loc["a1", "param:model.hidden_size"] == "32"
    # a later write without dataset b removes its shard: the folder is exactly the record
    record.write(df[df["dataset"] != "b"], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["_study.csv", "a.csv", "a.trials.csv"]
    # the layout before shards is still read, and the next write replaces it
    legacy_file = tmp_path / "record.csv"
    record.tidy(df[df["dataset"] != "b"]).to_csv(legacy_file, index=False, lineterminator="\n")
    assert record.locate(tmp_path) == folder
    whole, sharded = record.read(legacy_file), record.read(folder)
    assert whole.drop(columns=sharded.columns).isna().all().all()   # only empty columns go
    pd.testing.assert_frame_equal(whole[sharded.columns], sharded)
    record.write(df, folder)
    assert not legacy_file.exists()
    with pytest.raises(ValueError, match="a record is a folder of shards"):
        record.write(df, tmp_path / "x.csv")
    with pytest.raises(ValueError, match="cannot name a record shard"):
        record.write(pd.DataFrame([_run("../x", "final", "r")]), tmp_path / "bad")


def test_float32_curves_are_written_short_and_read_back_as_the_same_float32(tmp_path):
    f32 = [float(np.float32(v)) for v in (0.6931471805599453, 1e-8, 123.456, -0.0)]
    f64 = [0.1, 1 / 3]   # not float32 values: written exactly as they are
    df = pd.DataFrame([_run("a", "final", "a1", **{
        "curve:val/loss": json.dumps(f32), "curve:train/loss": json.dumps(f64 + [math.nan])})])
    folder = record.write(df, tmp_path / "record")
    text = (folder / "a.csv").read_text()
    assert "0.6931472" in text and "0.6931471824645996" not in text
    row = record.read(folder).iloc[0]
    curves = record.curves(row)
    assert [float(np.float32(v)) for _, v in curves["val/loss"]] == f32
    assert [v for _, v in curves["train/loss"]][:2] == f64
    assert math.isnan(curves["train/loss"][2][1])


def test_missing_or_foreign_record_is_refused(tmp_path):
    with pytest.raises(LookupError, match="not found"):
        record.read(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LookupError, match="not a bench record"):
        record.read(tmp_path / "x.csv")


@pytest.mark.skipif(not (CPU / "results.csv").is_file(), reason="reports/cpu not present")
def test_rebuild_from_results_csv_gives_back_the_same_results_csv(tmp_path):
    readme = "- **Hardware**: test box\n\n```yaml\nname: cpu\ntuning: {seed: 0}\ndatasets:\n" \
             "  samsung_close:\n    overrides: [dataset=samsung, dataset.target=close]\n```\n"
    df = legacy.rebuild(CPU / "results.csv", readme, "cpu")
    path = record.write(df, tmp_path / "record")
    data = collect.study_data(record.read(path))
    out = tmp_path / "results.csv"
    collect.results_table(data).to_csv(out, index=False, lineterminator="\n")
    assert out.read_bytes() == (CPU / "results.csv").read_bytes()
    session = data.sessions.iloc[0]
    assert session["hardware"] == "test box" and "not rebuilt: per-epoch curves" in session["source"]
    runs = data.runs
    # The ROPE comes from the dataset configs; the definition's overrides reach the params.
    assert set(runs.loc[runs["dataset"] == "imdb", "rope"]) == {0.005}
    assert set(runs.loc[runs["dataset"] == "sbux", "rope"]) == {0.01}
    close = runs[runs["dataset"] == "samsung_close"]
    assert set(close["param:dataset.target"]) == {"close"}
    assert set(runs.loc[runs["dataset"] == "samsung", "param:dataset.target"]) == {"return"}
    assert data.histories and not any(data.histories.values())   # no curves survive


def test_report_from_a_hand_written_record_with_repeated_tuning(tmp_path):
    """A record alone (no store) with two sampler seeds on one dataset: the variance section
    splits the spread, the main tables use the primary tuning seed only."""
    from bench.report.build import build_from_record

    path = hand_record(tmp_path)
    build_from_record(path, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "**Single best: `gru-single`.**" in text
    assert "| d | `gru-single` | 2 | 4 |" in text          # the variance components table
    assert "tuning repeated with sampler seeds [0, 1] on `d`" in text
    res = pd.read_csv(tmp_path / "results.csv")
    assert "tuning_seed" in res.columns and len(res) == 2 * 4 * 2 + 4 + 2 * 4 + 4
    # The leaderboard of d holds the primary tuning seed's four runs per architecture.
    assert "| 1 | `gru-single` | 90." in text and "| 4 | " in text
