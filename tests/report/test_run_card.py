"""A run card is written from the MLflow record of a real run."""

from __future__ import annotations

from bench.report.run_card import write_card
from bench.train import run


def test_run_card_reports_the_recorded_run(make_cfg, mlflow_uri, tmp_path):
    result = run(make_cfg("dataset=synthetic", "model.hidden_size=8", "seed=4"))
    out = tmp_path / "card"
    text = write_card(mlflow_uri, result.run_id, out)
    assert (out / "learning_curves.png").stat().st_size > 0
    assert result.run_id in text and "seed 4" in text
    acc = result.test_metrics["test/accuracy"]
    assert f"| accuracy | {acc:.4f} |" in text
    assert "Hardware:" in text and "cores" in text
