"""The tidy record: relative paths, exact round trips, and a rebuild from an earlier results.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import collect, legacy, record

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
    a = record.write(df, tmp_path / "a.csv")
    back = record.read(a)
    assert back.loc[back["kind"] == "final", "score"].iloc[0] == 0.1 + 0.2   # repr round trip
    record.write(back, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert list(back["kind"]) == ["session", "final"]
    assert record.curves(back.iloc[1]) == {"val/accuracy": [(0, 0.5), (1, 0.6)]}


def test_missing_or_foreign_record_is_refused(tmp_path):
    with pytest.raises(LookupError, match="file not found"):
        record.read(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LookupError, match="not a bench record"):
        record.read(tmp_path / "x.csv")


@pytest.mark.skipif(not (CPU / "results.csv").is_file(), reason="reports/cpu not present")
def test_rebuild_from_results_csv_gives_back_the_same_results_csv(tmp_path):
    readme = "- **Hardware**: test box\n\n```yaml\nname: cpu\ntuning: {seed: 0}\ndatasets:\n" \
             "  samsung_close:\n    overrides: [dataset=samsung, dataset.target=close]\n```\n"
    df = legacy.rebuild(CPU / "results.csv", readme, "cpu")
    path = record.write(df, tmp_path / "record.csv")
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

    rng = np.random.default_rng(0)
    rows = [{"kind": "session", "study": "hand", "run_id": "s",
             "definition": "name: hand\ntuning: {seed: 0, n_trials: 4}\n"
                           "datasets:\n  d: {tuning_seeds: [0, 1]}\n  e: {}\n"}]
    for ds, shift in (("d", 0.0), ("e", 0.02)):
        for arch, mean in (("gru-single", 0.90), ("lstm-single", 0.85), ("naive", 0.5)):
            for tseed in ((0, 1) if ds == "d" and arch != "naive" else (0,)):
                for seed in range(4):
                    v = mean + shift + (0.0 if arch == "naive" else
                                        0.01 * tseed + rng.normal(0, 0.003))
                    rows.append({
                        "kind": "baseline" if arch == "naive" else "final", "study": "hand",
                        "dataset": ds, "dataset_name": ds, "arch": arch, "seed": seed,
                        "tuning_seed": None if arch == "naive" else tseed, "status": "FINISHED",
                        "metric": "accuracy", "direction": "maximize", "rope": 0.005,
                        "rope_source": "config", "score": v, "run_id": f"{ds}-{arch}-{tseed}-{seed}",
                        "optuna_study": None if arch == "naive" else f"hand.{ds}.{arch}"})
    path = record.write(pd.DataFrame(rows), tmp_path / "record.csv")
    build_from_record(path, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "**Single best: `gru-single`.**" in text
    assert "| d | `gru-single` | 2 | 4 |" in text          # the variance components table
    assert "tuning repeated with sampler seeds [0, 1] on `d`" in text
    res = pd.read_csv(tmp_path / "results.csv")
    assert "tuning_seed" in res.columns and len(res) == 2 * 4 * 2 + 4 + 2 * 4 + 4
    # The leaderboard of d holds the primary tuning seed's four runs per architecture.
    assert "| 1 | `gru-single` | 90." in text and "| 4 | " in text
