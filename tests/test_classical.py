"""Classical baselines: 1NN-DTW on archive sets, exponential smoothing on forecast series,
recorded and planned like the naive baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bench.models import classical as methods
from bench.stores import StoreAddress
from bench.study import Runner, load

SMOKE = Path(__file__).resolve().parent / "study" / "study_smoke.yaml"


def _shapes(n: int, length: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A bump or a step, at a random shift: DTW aligns the shift away, the shape stays."""
    t = np.arange(length)
    y = rng.integers(0, 2, n)
    centre = length / 2 + rng.integers(-8, 9, n)
    bump = np.exp(-0.5 * ((t[None, :] - centre[:, None]) / 3.0) ** 2)
    step = (t[None, :] >= centre[:, None]).astype(float)
    x = np.where(y[:, None] == 0, bump, step) + rng.normal(0, 0.05, (n, length))
    return x, y


def test_nearest_neighbour_dtw_classifies_shifted_shapes():
    rng = np.random.default_rng(0)
    x, y = _shapes(20, 40, rng)
    tx, ty = _shapes(30, 40, rng)
    assert (methods.nearest_neighbour_dtw(x, y, tx, classification=True) == ty).mean() == 1.0


def test_unequal_lengths_are_compared_without_the_padding():
    """Zero padding would count as data; the cases are cut to their lengths first."""
    series = np.zeros((2, 10))
    series[0, :4] = [1, 2, 3, 2]
    series[1, :10] = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    query = np.zeros((1, 10))
    query[0, :5] = [1, 2, 3, 3, 2]
    got = methods.nearest_neighbour_dtw(series, np.array([0.0, 1.0]), query, classification=False,
                                        train_lengths=np.array([4, 10]),
                                        test_lengths=np.array([5]))
    assert got.tolist() == [0.0]


def test_exponential_smoothing_forecasts_one_step_ahead_from_the_fitted_rows():
    rng = np.random.default_rng(1)
    t = np.arange(240)
    y = 10 + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.2, len(t))
    fit = methods.exponential_smoothing(y, 200, season=12)
    assert "m=12" in fit.form and fit.forecasts.shape == y.shape
    # the held-out rows are forecast about as well as the noise allows
    assert np.abs(fit.forecasts[200:] - y[200:]).mean() < 0.4


def test_a_study_runs_the_classical_baseline_once_like_the_naive_one():
    s = load(SMOKE, ["seeds=3", "baselines.classical.tune=false"])
    cells = [c for c in s.cells() if c.arch == "classical"]
    assert cells and all(c.phase == "baseline" and c.space is None for c in cells)
    assert "model=classical" in cells[0].overrides
    lines: list[str] = []
    Runner(s, dry_run=True, echo=lines.append).run("dry")
    assert "  baseline synthetic/classical: seeds done [], to run [0]" in lines
    assert "  baseline synthetic/naive: seeds done [], to run [0, 1, 2]" in lines


@pytest.mark.realdata
@pytest.mark.slow
def test_gunpoint_reproduces_the_published_1nn_dtw_and_records_like_a_baseline(
        real_data_dir, tmp_path, monkeypatch):
    """The archive's default split, every TRAIN case, a full window: the bake-off's 90.67%."""
    from bench.report import published
    from bench.results.reader import from_store

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "study.yaml").write_text(
        "name: refs\nseeds: 2\ntuning: {n_trials: 0}\n"
        "baselines: {classical: {tune: false}}\n"
        f"tracking_uri: {uri}\n"
        f"overrides: [data_dir={real_data_dir}]\n"
        "datasets: {gunpoint: {overrides: [dataset=gunpoint], baselines: [classical]}}\n")
    s = load(tmp_path / "study.yaml")
    runner = Runner(s, echo=lambda _: None)
    (cell,) = [c for c in s.cells() if c.arch == "classical"]
    assert runner.finals(cell) == 0
    assert runner.finals(cell) == 0 and set(runner.finished_runs(cell)) == {0}  # done: one run

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                "tags.arch = 'classical'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["classical_method"] == methods.DTW
    paper = dict((m, v) for m, v, _ in published.scores("GunPoint", "accuracy"))["1NN-DTW"]
    assert run.data.metrics["test/accuracy"] == pytest.approx(paper, abs=1e-6)
    assert run.data.metrics["test/naive_accuracy"] < 0.6

    record = from_store(StoreAddress.tracking(uri), "refs")
    row = record[(record["kind"] == "baseline") & (record["arch"] == "classical")]
    assert len(row) == 1 and row["score"].iloc[0] == pytest.approx(paper, abs=1e-6)
