import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from bench.data import build, jena_synthetic
from bench.data.base import ConfigError, DataError
from bench.data.module import BenchDataModule
from bench.data.series import load_table
from tests.support.data import FIXTURES, dataset_cfg

JENA_ROWS = 3000
JENA_SMALL = {"lookback": 120, "step": 6, "delay": 12, "expected_rows": JENA_ROWS,
              "split": {"by": "rows", "train": [0, 1500], "val": [1501, 2200],
                        "test": [2201, None]}}
SAMSUNG_SLICE = {"sources": [{"name": "005930.KS.slice.csv"}],
                 "date_range": ["2000-09-01", "2001-12-31"]}


def all_of(split):
    return split[torch.arange(len(split))]


@pytest.fixture(scope="module")
def jena_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("jena_data")
    jena_synthetic.write_csv(d / "jena" / "jena_climate_2009_2016.csv", JENA_ROWS, seed=1)
    return d


def jena_cfg(**kw):
    return dataset_cfg("jena", **{**JENA_SMALL, **kw})


# ------------------------------------------------------------------ Jena


def test_real_jena_rows_parse_with_the_genuine_config():
    cfg = dataset_cfg("jena", sources=[{"name": "jena_climate_first19rows_sample.csv"}],
                      expected_rows=19)
    t = load_table(cfg, FIXTURES)
    assert t.features.shape == (19, 14) and t.target_name == "T (degC)"
    assert t.target[0] == pytest.approx(-8.02)
    assert t.dates.iloc[0] == pd.Timestamp("2009-01-01 00:10:00")
    with pytest.raises(DataError, match="19 data rows; expected 420551"):
        load_table(dataset_cfg("jena", sources=[{"name": "jena_climate_first19rows_sample.csv"}]),
                   FIXTURES)


def test_jena_training_path_on_synthetic_series(jena_dir):
    p = build(jena_cfg(), jena_dir)
    assert p.info.seq_len == 20 and p.info.n_features == 14 and p.info.units == "degC"
    assert (len(p.train), len(p.val), len(p.test)) == (1500 - 120 - 12, 699 - 132, 799 - 132)
    feats = p.train.features[:1500]
    assert torch.allclose(feats.mean(0), torch.zeros(14), atol=1e-4)  # scaled on training rows
    dm = BenchDataModule(lambda: p, batch_size=32, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (32, 20, 14) and batch["y"].shape == (32,)
    gru, head = torch.nn.GRU(14, 8, batch_first=True), torch.nn.Linear(8, 1)
    out, _ = gru(batch["x"])
    loss = torch.nn.functional.l1_loss(head(out[:, -1]).squeeze(1), batch["y"])
    loss.backward()
    assert torch.isfinite(loss)
    raw = pd.read_csv(jena_dir / "jena" / "jena_climate_2009_2016.csv")["T (degC)"].to_numpy()
    b = all_of(p.val)
    assert torch.allclose(p.info.to_units(b["y"]).double(),
                          torch.from_numpy(raw[p.val.anchors.numpy() + 12]), atol=1e-3)


def _textbook_generator(data, lookback, delay, min_index, max_index, batch_size=128, step=6):
    """The textbook's sequential generator (Chollet, Deep Learning with Python, 6.3)."""
    i = min_index + lookback
    while 1:
        if i + batch_size >= max_index:
            i = min_index + lookback
        rows = np.arange(i, min(i + batch_size, max_index))
        i += len(rows)
        samples = np.zeros((len(rows), lookback // step, data.shape[-1]))
        targets = np.zeros((len(rows),))
        for j, _row in enumerate(rows):
            indices = range(rows[j] - lookback, rows[j], step)
            samples[j] = data[indices]
            targets[j] = data[rows[j] + delay][1]
        yield rows, samples, targets


def test_windows_match_the_textbook_generator(jena_dir):
    p = build(jena_cfg(), jena_dir)
    data = p.train.features.double().numpy()  # column 1 is T (degC), as in the textbook
    lookback, delay, step = 120, 12, 6
    # Our anchors stop where the target leaves the split; the textbook's run `delay` further.
    assert torch.equal(p.val.anchors, torch.arange(1501 + lookback, 2200 - delay))
    gen = _textbook_generator(data, lookback, delay, 1501, 2200 - delay, batch_size=100, step=step)
    seen = 0
    while seen < len(p.val):
        rows, samples, targets = next(gen)
        idx = torch.from_numpy(rows - (1501 + lookback))
        b = p.val[idx]
        np.testing.assert_allclose(b["x"].double().numpy(), samples, rtol=1e-6)
        np.testing.assert_allclose(b["y"].double().numpy(), targets, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b["naive"].double().numpy(), samples[:, -1, 1], rtol=1e-6)
        seen += len(rows)


def _perturbed(src, dst, date_col, fmt, from_date, columns):
    """A copy of a CSV with every value at ``from_date`` and later changed."""
    df = pd.read_csv(src)
    later = pd.to_datetime(df[date_col], format=fmt) >= from_date
    for c in columns:
        df.loc[later, c] = df.loc[later, c] * 1.7  # zeros stay zeros: same rows dropped
    dst.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(dst, index=False)


def _assert_no_lookahead(p_a, p_b, split="test"):
    """Same inputs (and baseline) for the first sample of ``split``, different target."""
    a, b = getattr(p_a, split)[torch.tensor([0])], getattr(p_b, split)[torch.tensor([0])]
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["naive"], b["naive"])
    assert not torch.equal(a["y"], b["y"])


def test_jena_no_lookahead(jena_dir, tmp_path):
    p = build(jena_cfg(), jena_dir)
    t = int(p.test.anchors[0]) + 12  # target row of the first test sample
    src = jena_dir / "jena" / "jena_climate_2009_2016.csv"
    date = pd.to_datetime(pd.read_csv(src)["Date Time"], format="%d.%m.%Y %H:%M:%S")[t]
    _perturbed(src, tmp_path / "jena" / src.name, "Date Time", "%d.%m.%Y %H:%M:%S", date,
               jena_synthetic.COLUMNS[1:])
    _assert_no_lookahead(p, build(jena_cfg(), tmp_path))


def test_jena_download_from_local_server(server, tmp_path):
    server.files["/jena.zip"] = jena_synthetic.zip_bytes(JENA_ROWS, seed=2)
    sources = [{"name": "jena_climate_2009_2016.csv"},
               {"name": "jena_climate_2009_2016.csv.zip", "member": "jena_climate_2009_2016.csv",
                "url": server.url("/jena.zip")}]
    p = build(jena_cfg(sources=sources), tmp_path)
    cached = tmp_path / "jena" / "jena_climate_2009_2016.csv.zip"
    assert cached.exists() and len(p.test) == 799 - 132
    build(jena_cfg(sources=sources), tmp_path)
    assert server.hits["/jena.zip"] == 1
    cached.write_bytes(cached.read_bytes()[:5000])  # corrupted in the cache
    p2 = build(jena_cfg(sources=sources), tmp_path)
    assert server.hits["/jena.zip"] == 2
    assert torch.equal(all_of(p2.val)["x"], all_of(p.val)["x"])


def test_jena_download_with_wrong_row_count_is_not_kept(server, tmp_path):
    server.files["/jena.zip"] = jena_synthetic.zip_bytes(100, seed=2)
    sources = [{"name": "jena.zip", "member": "jena_climate_2009_2016.csv",
                "url": server.url("/jena.zip")}]
    with pytest.raises(DataError, match="100 data rows; expected 3000"):
        build(jena_cfg(sources=sources), tmp_path)
    assert not (tmp_path / "jena" / "jena.zip").exists()


# ------------------------------------------------------------------ SBUX


def test_sbux_reference_file_and_horizons():
    p = build(dataset_cfg("sbux"), FIXTURES)
    assert (len(p.train), len(p.val), len(p.test)) == (179, 20, 53)
    assert p.info.units == "shares" and p.info.seq_len == 1 and p.info.n_features == 5
    vol = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")["Volume"].to_numpy()
    b = all_of(p.test)
    np.testing.assert_allclose(p.info.to_units(b["y"]).double().numpy(), vol[200:], rtol=1e-5)
    # next-day default: the baseline is yesterday's volume
    np.testing.assert_allclose(p.info.to_units(b["naive"]).double().numpy(), vol[199:252],
                               rtol=1e-5)
    same = build(dataset_cfg("sbux", delay=-1), FIXTURES)  # the reference's same-day setup
    s = all_of(same.test)
    prices = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")["Open"].to_numpy()
    open_scaled = (prices - prices[:180].mean()) / prices[:180].std()
    np.testing.assert_allclose(s["x"][:, 0, 0].double().numpy(), open_scaled[200:], rtol=1e-4)
    np.testing.assert_allclose(same.info.to_units(s["naive"]).double().numpy(), vol[199:252],
                               rtol=1e-5)  # never the answer itself


def test_sbux_no_lookahead(tmp_path):
    p = build(dataset_cfg("sbux"), FIXTURES)
    _perturbed(FIXTURES / "sbux" / "SBUX.csv", tmp_path / "sbux" / "SBUX.csv", "Date", "%Y-%m-%d",
               pd.Timestamp("2020-09-28"), ["Open", "High", "Low", "Close", "Adj Close", "Volume"])
    dates = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")["Date"]
    assert dates[200] == "2020-09-28"  # the first test target's day
    _assert_no_lookahead(p, build(dataset_cfg("sbux", sources=[{"name": "SBUX.csv"}]), tmp_path))


def test_scalers_fit_on_training_rows_only(tmp_path):
    p = build(dataset_cfg("sbux"), FIXTURES)
    _perturbed(FIXTURES / "sbux" / "SBUX.csv", tmp_path / "sbux" / "SBUX.csv", "Date", "%Y-%m-%d",
               pd.Timestamp("2020-08-31"), ["Open", "Volume"])  # from validation onwards
    q = build(dataset_cfg("sbux", sources=[{"name": "SBUX.csv"}]), tmp_path)
    assert torch.equal(all_of(p.train)["x"], all_of(q.train)["x"])
    assert p.info.target_scale == q.info.target_scale


# ------------------------------------------------------------------ Samsung


def test_samsung_slice_drops_zero_volume_and_builds_past_only_averages():
    cfg = dataset_cfg("samsung", **SAMSUNG_SLICE)
    t = load_table(cfg, FIXTURES)
    raw = pd.read_csv(FIXTURES / "samsung" / "005930.KS.slice.csv")
    sel = raw[(raw.Date >= "2000-09-01") & (raw.Date <= "2001-12-31")]
    kept = sel[sel.Volume != 0].reset_index(drop=True)
    assert t.rows_selected == len(sel) and t.rows_dropped == (sel.Volume == 0).sum() > 0
    assert t.rows_leading == 5 and len(t.target) == len(kept) - 5
    close = kept.Close.to_numpy()
    ma3, ma5 = t.features[:, 5], t.features[:, 6]
    for i in range(len(t.target)):
        r = i + 5  # row in `kept`
        assert ma3[i] == pytest.approx(close[r - 3 : r].mean())  # only closes before day r
        assert ma5[i] == pytest.approx(close[r - 5 : r].mean())
        assert t.target[i] == pytest.approx((close[r] - close[r - 1]) / close[r - 1])


def test_samsung_close_target_is_the_leaky_reference():
    p = build(dataset_cfg("samsung", **SAMSUNG_SLICE, target="close"), FIXTURES)
    assert p.info.units == "KRW" and p.info.target_name == "Close"
    r = build(dataset_cfg("samsung", **SAMSUNG_SLICE), FIXTURES)
    assert r.info.units == "fraction" and r.info.target_name == "return(Close)"
    assert (len(r.train), len(r.val), len(r.test)) == (len(p.train), len(p.val), len(p.test))


def test_samsung_no_lookahead(tmp_path):
    p = build(dataset_cfg("samsung", **SAMSUNG_SLICE), FIXTURES)
    t = load_table(dataset_cfg("samsung", **SAMSUNG_SLICE), FIXTURES)
    first_test_target = int(p.test.anchors[0]) + 0
    day = t.dates.iloc[first_test_target]
    _perturbed(FIXTURES / "samsung" / "005930.KS.slice.csv",
               tmp_path / "samsung" / "005930.KS.slice.csv", "Date", "%Y-%m-%d", day,
               ["Open", "High", "Low", "Close", "Adj Close", "Volume"])
    _assert_no_lookahead(p, build(dataset_cfg("samsung", **SAMSUNG_SLICE), tmp_path))


# ------------------------------------------------------------------ splits and the generic csv


def test_generic_csv_with_date_splits_and_fraction_validation():
    base = {"path": str(FIXTURES / "sbux" / "SBUX.csv"), "date_column": "Date",
            "date_format": "%Y-%m-%d", "target": "Close", "features": ["Close", "Volume"],
            "lookback": 5}
    p = build(dataset_cfg("csv", **base, split={
        "by": "date", "train": [None, "2020-06-30"], "val": ["2020-07-01", "2020-09-30"],
        "test": ["2020-10-01", None]}), FIXTURES)
    dates = pd.read_csv(FIXTURES / "sbux" / "SBUX.csv")["Date"]
    assert dates[203] == "2020-10-01" and dates[202] == "2020-09-30"
    assert p.info.notes["rows_test"] == "[203, 253)" and p.info.notes["rows_val"] == "[139, 203)"
    q = build(dataset_cfg("csv", **base, split={"by": "fraction", "train": 0.8, "val": None, "test": 0.2,
                                                "val_from_train": 0.25}), FIXTURES)
    assert q.info.notes["rows_train"] == "[0, 152)" and q.info.notes["rows_val"] == "[152, 202)"


def test_overlapping_splits_are_refused():
    with pytest.raises(ConfigError, match="val starts at row 100, before train ends at row 200"):
        build(dataset_cfg("sbux", split={"by": "rows", "train": [0, 200], "val": [100, 210],
                                         "test": [210, None], "val_from_train": None}), FIXTURES)


# ------------------------------------------------------------------ bad input


def _sbux_copy(tmp_path, edit):
    lines = (FIXTURES / "sbux" / "SBUX.csv").read_text().splitlines()
    lines = edit(lines)
    d = tmp_path / "sbux"
    d.mkdir(exist_ok=True)
    (d / "SBUX.csv").write_text("\n".join(lines) + "\n")
    return dataset_cfg("sbux", sources=[{"name": "SBUX.csv"}])


def test_missing_or_renamed_column(tmp_path):
    cfg = _sbux_copy(tmp_path, lambda ls: [ls[0].replace("Adj Close", "AdjClose")] + ls[1:])
    with pytest.raises(DataError, match=r"SBUX.csv: columns do not match.*missing \['Adj Close'\]"):
        build(cfg, tmp_path)
    cfg.expected_columns = None
    with pytest.raises(DataError, match=r"column 'Adj Close' \(dataset.features\) not found "
                                        r"\(did you mean 'AdjClose'\?\)"):
        build(cfg, tmp_path)


def test_unparseable_date(tmp_path):
    cfg = _sbux_copy(tmp_path, lambda ls: ls[:10] + [ls[10].replace("2019-12-24", "24/12/2019")]
                     + ls[11:])
    with pytest.raises(DataError, match=r"line 11: '24/12/2019' in column 'Date' "
                                        r"\(dataset.date_column\) is not a date in the format"):
        build(cfg, tmp_path)


def test_date_range_selecting_nothing():
    with pytest.raises(ConfigError, match=r"date_range: \[1990-01-01, 1990-12-31\] selects no rows"):
        build(dataset_cfg("sbux", date_range=["1990-01-01", "1990-12-31"]), FIXTURES)


def test_window_longer_than_a_split():
    with pytest.raises(ConfigError, match=r"lookback: a window of 30 rows .* the val split"):
        build(dataset_cfg("sbux", lookback=30, window_context="within_split"), FIXTURES)


def test_non_numeric_cell(tmp_path):
    cfg = _sbux_copy(tmp_path, lambda ls: ls[:5] + [ls[5].replace(",88.", ",abc", 1)] + ls[6:])
    with pytest.raises(DataError, match=r"SBUX.csv, line 6: 'abc[0-9]*' in column 'Open' .* not a number"):
        build(cfg, tmp_path)


def test_nan_only_column(tmp_path):
    def blank_high(ls):
        out = [ls[0]]
        for line in ls[1:]:
            f = line.split(",")
            f[2] = ""
            out.append(",".join(f))
        return out

    with pytest.raises(DataError, match=r"column 'High' \(dataset.features\) has no values"):
        build(_sbux_copy(tmp_path, blank_high), tmp_path)


def test_empty_cell_and_truncated_csv(tmp_path):
    cfg = _sbux_copy(tmp_path, lambda ls: ls[:-1] + [ls[-1][:25]])  # last line cut mid-row
    cfg.expected_rows = None
    with pytest.raises(DataError, match=r"SBUX.csv, line 254: column 'Low' .* is empty"):
        build(cfg, tmp_path)
    cfg.missing = "drop"
    assert len(build(cfg, tmp_path).test) == 52
    cfg = _sbux_copy(tmp_path, lambda ls: ls[:100])
    with pytest.raises(DataError, match="99 data rows; expected 253"):
        build(cfg, tmp_path)


def test_corrupt_zip_and_missing_member(tmp_path):
    d = tmp_path / "jena"
    d.mkdir()
    data = jena_synthetic.zip_bytes(500)
    (d / "j.zip").write_bytes(data[: len(data) // 2])
    cfg = jena_cfg(sources=[{"name": "j.zip", "member": "jena_climate_2009_2016.csv"}])
    with pytest.raises(DataError, match=r"j.zip: not a readable zip archive"):
        build(cfg, tmp_path)
    with zipfile.ZipFile(d / "j.zip", "w") as zf:
        zf.writestr("other.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"no member 'jena_climate_2009_2016.csv'.*other.csv"):
        build(cfg, tmp_path)


def test_corrupt_zip_member_data(tmp_path):
    d = tmp_path / "jena"
    d.mkdir()
    data = bytearray(jena_synthetic.zip_bytes(500))
    data[200:260] = b"\0" * 60  # damage the deflated stream, keep the directory
    (d / "j.zip").write_bytes(bytes(data))
    cfg = jena_cfg(sources=[{"name": "j.zip", "member": "jena_climate_2009_2016.csv"}])
    with pytest.raises(DataError, match=r"j.zip!jena_climate_2009_2016.csv: the compressed data is "
                                        r"corrupt"):
        build(cfg, tmp_path)


def test_checksum_mismatch_of_sbux(tmp_path):
    shutil.copytree(FIXTURES / "sbux", tmp_path / "sbux")
    with open(tmp_path / "sbux" / "SBUX.csv", "a") as f:
        f.write("2020-12-11,1,1,1,1,1,1\n")
    with pytest.raises(DataError, match="SBUX.csv: sha256 mismatch"):
        build(dataset_cfg("sbux"), tmp_path)


def test_bad_window_config():
    with pytest.raises(ConfigError, match="delay: -2; expected >= -step"):
        build(dataset_cfg("sbux", delay=-2), FIXTURES)
    with pytest.raises(ConfigError, match="not a multiple of dataset.step"):
        build(dataset_cfg("sbux", lookback=5, step=2), FIXTURES)


# ------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_real_sbux_and_samsung_sizes(real_data_dir):
    s = build(dataset_cfg("sbux"), real_data_dir)
    assert s.info.notes["rows"] == "253" and (len(s.train), len(s.val), len(s.test)) == (179, 20, 53)
    m = build(dataset_cfg("samsung"), real_data_dir)
    n = m.info.notes
    assert (n["rows_selected"], n["rows_dropped"], n["rows_leading"], n["rows"]) == (
        "5528", "115", "5", "5408")
    assert (len(m.train), len(m.val), len(m.test)) == (4584, 514, 270)
