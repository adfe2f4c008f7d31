"""The forecasting panel: seasonal naive, MASE, statsmodels series, gaps, stacked tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import build
from bench.data.base import ConfigError
from bench.data.cli import load_cfg, naive_scores, panel
from bench.data.series import in_sample_naive_mae, seasonal_lag


def _series_csv(tmp_path, values):
    path = tmp_path / "s.csv"
    path.write_text("t,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return path


def _cfg(path, *overrides):
    return load_cfg("forecast", [f"path={path}", "features=[value]", "target=value", *overrides])


def test_seasonal_naive_is_the_value_one_season_before_the_target(tmp_path):
    values = np.arange(60) % 12 * 10.0 + np.arange(60)  # a season of 12 on a trend
    p = build(_cfg(_series_csv(tmp_path, values), "season=12", "lookback=6",
                   "scaling.target=none", "scaling.features=none"), tmp_path)
    b = p.test[torch.arange(len(p.test))]
    np.testing.assert_allclose(b["y"] - b["naive"], 12.0)  # the trend over one season
    # horizon 3 (delay 2) still one season back; horizon 14 two seasons back
    assert seasonal_lag(3, 12) == 12 and seasonal_lag(14, 12) == 24 and seasonal_lag(3, None) == 3


def test_mase_is_scaled_by_the_in_sample_seasonal_naive_error(tmp_path):
    rng = np.random.default_rng(0)
    values = np.sin(np.arange(200) * 2 * np.pi / 12) * 5 + rng.normal(size=200)
    p = build(_cfg(_series_csv(tmp_path, values), "season=12", "lookback=12"), tmp_path)
    lo, hi = (int(v) for v in p.info.notes["rows_train"].strip("[)").split(","))
    y = (values - values[lo:hi].mean()) / values[lo:hi].std()
    expected = np.abs(y[lo + 12: hi] - y[lo: hi - 12]).mean()
    assert p.info.mase_scale == pytest.approx(expected, rel=1e-5)
    s = naive_scores(p, "test")
    assert s["mase"] == pytest.approx(s["mae"] / expected, rel=1e-6)
    assert in_sample_naive_mae(np.ones(20), 4) is None
    with pytest.raises(ConfigError, match="dataset.season"):
        build(_cfg(_series_csv(tmp_path, values), "season=1"), tmp_path)


def test_mase_is_logged_by_runs(make_cfg, tmp_path):
    from bench.train import run

    path = _series_csv(tmp_path, np.sin(np.arange(120) / 3.0))
    cfg = make_cfg("dataset=forecast", f"dataset.path={path}", "dataset.features=[value]",
                   "dataset.target=value", "dataset.season=12", "model.hidden_size=4")
    result = run(cfg)
    assert {"test/mase", "test/naive_mase"} <= set(result.test_metrics)


def test_statsmodels_series_gaps_and_stacked_tables(tmp_path):
    co2 = build(load_cfg("co2"), tmp_path)
    assert co2.info.notes["values_interpolated"] == "59"
    assert co2.info.notes["naive"].startswith("seasonal naive (lag 52")
    elnino = build(load_cfg("elnino"), tmp_path)
    assert elnino.info.notes["rows"] == str(61 * 12)
    import statsmodels.api as sm

    raw = sm.datasets.elnino.load_pandas().data
    stacked = raw.iloc[:, 1:].to_numpy().reshape(-1)
    first = elnino.train[torch.arange(1)]
    scale, off = elnino.info.target_scale, elnino.info.target_offset
    # the first window's target is month `lookback` of the row-by-row series
    assert float(first["y"][0]) * scale + off == pytest.approx(stacked[24], rel=1e-5)
    nile = build(load_cfg("nile"), tmp_path)
    assert nile.info.notes["naive"] == "persistence (lag 1 rows)"


def test_the_panel_lists_at_least_twenty_real_datasets():
    names = panel()
    assert len(names) >= 20 and len(set(names)) == len(names)
    for name in names:
        cfg = load_cfg(name)
        assert cfg.kind in ("mnist", "imdb", "series", "ucr")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["airpassengers", "ausbeer", "lynx", "sunspots_monthly",
                                  "taylor", "wineind", "woolyrnq"])
def test_real_forecast_csvs(name, real_data_dir):
    p = build(load_cfg(name), real_data_dir)
    assert len(p.train) > len(p.val) > 0 and len(p.test) > 0
    assert p.info.mase_scale and np.isfinite(naive_scores(p, "test")["mase"])
