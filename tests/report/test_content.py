"""The report as data: the structure holds the numbers the README words, and rendering it is
all that stands between the two."""

from __future__ import annotations

import math

import pytest

from bench.report import content, markdown
from bench.report.build import build_from_record
from bench.report.collect import study_data
from bench.results import record
from bench.stores import mask
from tests.support.records import hand_record


@pytest.mark.slow
def test_the_structure_carries_numbers_and_renders_to_the_readme(tmp_path):
    path = hand_record(tmp_path)
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

    text = record.relative_paths(mask(markdown.render(report)))
    assert text == (tmp_path / "README.md").read_text(encoding="utf-8")


def test_the_budget_says_where_tuning_scored_its_trials():
    from bench.report.model import Budget

    common = dict(n_trials=12, sampler="tpe", seed="0", pruner="median", repeats={},
                  overrides=[], match_params=None)
    assert "on the validation split (sampler" in markdown.budget(Budget(**common))
    folded = markdown.budget(Budget(**common, folds="auto"))
    assert "on the mean over 5 folds of all training cases where a dataset has fewer than 500"\
        in folded and "`tuning.folds: auto`" in folded
    assert "on the validation split (sampler" in markdown.budget(Budget(**common, folds="off"))
