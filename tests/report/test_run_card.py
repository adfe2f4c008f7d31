"""A run card is written from the MLflow record of real runs of one experiment."""

from __future__ import annotations

import json

import pytest

from bench.report.run_card import judge, write_card, write_table
from bench.train import run

REF = ("reference={source: a tutorial, claim: accuracy about 0.5, metric: test/accuracy, "
       "value: 0.5, tolerance: 0.5}")


def _run(make_cfg, seed: int, *extra: str):
    cfg = make_cfg("dataset=synthetic", "model.hidden_size=8", f"seed={seed}", REF, *extra)
    command = " ".join(["python -m bench +experiment=tiny", f"seed={seed}", *extra])
    return run(cfg, tags={"command": command})


def test_card_over_seeds_with_claim_and_variants(make_cfg, mlflow_uri, tmp_path):
    results = [_run(make_cfg, s) for s in (0, 1)]
    variant = _run(make_cfg, 0, "trainer.max_epochs=1")
    out = tmp_path / "runs" / "tiny"
    text = write_card(mlflow_uri, "tiny", out)
    card = json.loads((out / "card.json").read_text())
    assert card["n"] == 2 and [s["seed"] for s in card["seeds"]] == [0, 1]
    accs = [r.test_metrics["test/accuracy"] for r in results]
    assert card["mean"] == pytest.approx(sum(accs) / 2)
    assert card["verdict"] == "met (within 0.5)" and card["claim"] == "accuracy about 0.5"
    assert [v["overrides"] for v in card["variants"]] == ["trainer.max_epochs=1"]
    assert card["variants"][0]["mean"] == pytest.approx(variant.test_metrics["test/accuracy"])
    assert (out / "learning_curves.png").stat().st_size > 0
    assert results[0].run_id[:12] in text and "Hardware:" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims:start -->\nold\n<!-- claims:end -->\nrest\n")
    table = write_table(tmp_path / "runs", readme)
    assert "[tiny](tiny/)" in table and "met (within 0.5)" in table
    body = readme.read_text()
    assert "old" not in body and "[tiny](reports/runs/tiny/)" in body and body.endswith("rest\n")


def test_judge_says_by_how_much_and_which_way():
    assert judge(0.95, 0.92, 0.03, "maximize") == "met (within 0.03)"
    assert judge(0.96, 0.92, 0.03, "maximize") == "missed: above the claim by 0.04 (better)"
    assert judge(0.80, 0.85, 0.01, "maximize") == "missed: below the claim by 0.05 (worse)"
    assert judge(1.5, 1.0, 0.1, "minimize").endswith("(worse)")
    assert judge(0.5, None, None, "maximize") == "no number claimed"
