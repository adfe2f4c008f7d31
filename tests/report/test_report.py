"""The report command on an MLflow store built by hand: known winners, exact regeneration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench import tracking
from bench.report.__main__ import main as report_main
from bench.results import record
from bench.stores import StoreAddress
from bench.study import SESSION_EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(5)
# dataset -> (metric, direction, units, {arch: mean score}); gru-single wins everywhere by far.
DATASETS = {
    "mnist": ("accuracy", "maximize", "", {"gru-single": 0.98, "lstm-single": 0.95,
                                          "rnn-single": 0.90, "naive": 0.11}),
    "sbux": ("rmse", "minimize", "shares", {"gru-single": 1.0e6, "lstm-single": 1.5e6,
                                           "rnn-single": 2.0e6, "naive": 3.0e6}),
    "samsung": ("r2", "maximize", "", {"gru-single": 0.30, "lstm-single": 0.20,
                                      "rnn-single": 0.10, "naive": -0.5}),
}


def _store(tmp_path: Path, uri: str, study: str = "hand") -> None:
    client = MlflowClient(uri)
    root = tracking.default_artifact_root(StoreAddress.tracking(uri))
    session_exp = tracking.ensure_experiment(client, SESSION_EXPERIMENT, root)
    sid = tracking.start_run(client, session_exp, "study-hand", {
        "study": study, "phase": "session", "command": "python -m bench.study sweeps/x.yaml",
        "hardware": "test machine", "tracking_uri": "sqlite:///mlflow.db",
    })
    client.log_text(sid, "name: hand\nseeds: 5\ntuning: {n_trials: 0}\noverrides: []\n"
                    "datasets:\n  jena: {enabled: false, needs: download it}\n", "study.yaml")
    client.set_terminated(sid, "FINISHED", end_time=10_000)
    rng = np.random.default_rng(0)
    for ds, (metric, direction, units, means) in DATASETS.items():
        exp = tracking.ensure_experiment(client, ds, root)
        for arch, mean in means.items():
            for seed in SEEDS:
                noise = 0.0 if arch == "naive" else rng.normal(0, abs(mean) * 0.005 + 1e-3)
                value = mean + noise
                tags = {"study": study, "phase": "baseline" if arch == "naive" else "final",
                        "study_dataset": ds, "dataset": ds, "arch": arch, "seed": seed,
                        "metric": metric, "direction": direction, "units": units,
                        "task": "classification" if metric == "accuracy" else "regression"}
                rid = tracking.start_run(client, exp, f"{ds}-{arch}-{seed}", tags)
                key = f"test/{metric}_units" if units else f"test/{metric}"
                naive = means["naive"]
                metrics = {key: value, f"test/{metric}": value / 1e6 if units else value,
                           (f"test/naive_{metric}_units" if units else f"test/naive_{metric}"): naive,
                           "time/mean_epoch_s": 1.5, "epochs_trained": 3}
                batch = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
                batch += [Metric(f"val/{metric}", value * (1 + 0.1 * (2 - e)), 0, e) for e in range(3)]
                params = {"n_params": 1000, "model.cell": arch.split("-")[0],
                          "dataset.target": "return"}
                client.log_batch(rid, metrics=batch,
                                 params=[Param(k, str(v)) for k, v in params.items()])
                client.set_terminated(rid, "FINISHED", end_time=20_000)
    # A failed run and a tuning trial must not enter the tables.
    exp = tracking.ensure_experiment(client, "mnist", root)
    bad = tracking.start_run(client, exp, "bad", {"study": study, "phase": "final",
                                                  "study_dataset": "mnist", "arch": "gru-single",
                                                  "seed": 9, "metric": "accuracy"})
    client.set_terminated(bad, "FAILED")
    tracking.start_run(client, exp, "trial", {"study": study, "arch": "gru-single"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    _store(tmp, uri)
    return tmp, uri


@pytest.mark.slow
def test_report_verdict_tables_and_csv(store):
    tmp, uri = store
    out = tmp / "out"
    assert report_main(["--study", "hand", "--tracking-uri", uri, "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "**Single best: `gru-single`.**" in text
    assert "**Significantly worse**: `lstm-single`, `rnn-single`." in text
    # Accuracy is shown in percent, RMSE in shares; skill against the naive baseline.
    assert "| 1 | `gru-single` | 98." in text
    assert "anchor (best candidate)" in text and "Welch's unpaired t-test" in text
    assert "Minimum detectable difference at 80% power" in text
    assert "P(better / equiv. / worse)" in text
    # Every dataset shows skill here; the sections of statistics v2 are all present.
    entered = "**3 of 3 dataset(s) enter the tests across datasets**; none is left out for no skill."
    assert entered in text
    assert "no skill" not in text.replace(entered, "").lower().replace("no-skill", "")
    for heading in ("### Pairwise Wilcoxon signed-rank tests (Holm)", "### Bayesian signed-rank test",
                    "### Aggregate skill", "### Friedman / Nemenyi (secondary view)",
                    "## Sensitivity of the verdict", "## Variance beyond seeds"):
        assert heading in text
    assert "Iman-Davenport" in text and "Power caveat" in text
    assert "`jena`: not run (download it)" in text
    assert "not run: `python -m bench +experiment=mnist_gru`" not in text  # mnist gru was run
    assert "not run: `python -m bench +experiment=jena_gru`" in text
    assert str(tmp) not in text                      # no machine paths
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 3 * 4 * 5
    assert list(res.columns[:5]) == ["dataset", "dataset_name", "arch", "phase", "seed"]
    assert res["run_id"].is_unique
    rec = record.read(out / "record")
    assert set(rec["kind"]) == {"session", "final", "baseline", "trial"}
    assert ((rec["kind"] == "final") & (rec["status"] == "FINISHED")).sum() == 3 * 3 * 5
    assert rec["run_id"].is_unique
    assert "curve:val/accuracy" in rec.columns
    assert (out / "figures" / "cd_diagram.png").is_file()
    assert (out / "figures" / "mnist_curves.png").is_file()
    # The record alone rebuilds the same report, byte for byte (figures included).
    again = tmp / "again"
    again.mkdir()
    shutil.copytree(out / "record", again / "record")
    assert report_main(["--from", str(again / "record")]) == 0
    for f in ("README.md", "results.csv", "figures/cd_diagram.png", "figures/mnist_curves.png"):
        assert (again / f).read_bytes() == (out / f).read_bytes(), f


@pytest.mark.slow
def test_report_regenerates_byte_identically_across_processes(store):
    tmp, uri = store
    outs = []
    for i, hashseed in enumerate(("1", "2")):
        out = tmp / f"regen{i}"
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        if i == 0:   # from the store (writes the record), then from a copy of the record alone
            cmd = ["--study", "hand", "--tracking-uri", uri, "--out", str(out)]
        else:
            out.mkdir()
            shutil.copytree(outs[0] / "record", out / "record")
            cmd = ["--from", str(out / "record")]
        subprocess.run([sys.executable, "-m", "bench.report", *cmd],
                       check=True, cwd=ROOT, env=env, capture_output=True)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert Path("README.md") in files and Path("results.csv") in files
    assert len([f for f in files if f.suffix == ".png"]) >= 4
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    assert sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file()) == files


def test_report_unknown_study_or_record_fails_clearly(store, capsys, tmp_path):
    _, uri = store
    assert report_main(["--study", "nope", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    assert "no MLflow runs tagged study='nope'" in capsys.readouterr().err
    assert report_main(["--from", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: not found" in capsys.readouterr().err


def test_sessions_side_by_side_count_once_in_the_wall_time():
    from bench.report.content import most_at_once, union_length

    spans = [(0.0, 10.0), (5.0, 20.0), (20.0, 25.0), (30.0, 40.0)]
    assert union_length(spans) == 35.0
    assert most_at_once(spans) == 2   # touching sessions are one after the other
