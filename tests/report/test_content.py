"""The report as data: the structure holds the numbers the README words, and rendering it is
all that stands between the two."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import tracking
from bench.report import content, markdown
from bench.report.build import build_from_record
from bench.report.collect import study_data
from bench.results import record


def _record(tmp_path):
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
    return record.write(pd.DataFrame(rows), tmp_path / "record")


def test_the_structure_carries_numbers_and_renders_to_the_readme(tmp_path):
    path = _record(tmp_path)
    build_from_record(path, tmp_path)
    report = content.compute(study_data(record.read(path)), content.Figures(tmp_path / "figures"))

    assert report.verdict.verdict.single_best == "gru-single"
    assert [s.dataset for s in report.datasets] == ["d", "e"]
    d = report.datasets[0]
    assert d.anchor == "gru-single" and d.top_group == ["gru-single"]
    top = d.leaderboard[0]
    assert top.arch == "gru-single" and top.anchor and top.n == 4
    assert isinstance(top.mean, float) and 0.89 < top.mean < 0.91
    assert top.ci_low < top.mean < top.ci_high
    assert d.leaderboard[-1].arch == "naive" and not d.leaderboard[-1].candidate
    assert math.isclose(d.rope.setting, 0.005) and d.rope.reference_name == "naive"
    assert [(r.dataset, r.arch, r.tuning_seeds) for r in report.variance] == [
        ("d", "gru-single", 2), ("d", "lstm-single", 2)]
    assert report.what_was_run.budget.n_trials == 4
    assert report.what_was_run.budget.repeats == {"d": [0, 1]}
    assert report.across.datasets == ["d", "e"] and report.across.ranking[0].arch == "gru-single"

    text = record.relative_paths(tracking.mask_secrets(markdown.render(report)))
    assert text == (tmp_path / "README.md").read_text(encoding="utf-8")
