"""The archive datasets: the .ts reader, the loader, a dataset never seen before, downloads."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import build
from bench.data.base import ConfigError, DataError
from bench.data.cli import load_cfg
from bench.data.ts_format import read_ts
from bench.data.ucr import holdout

VOWELS = """# a comment line
@problemName TinyVowels
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
1.0,2.0,3.0:4.0,5.0,6.0:a
1.5,2.5:4.5,5.5:b
0.5,0.1,0.2,0.3:0.0,0.1,0.2,0.3:c
2.0,1.0,0.0:3.0,2.0,1.0:a
1.0,1.0:1.0,1.0:b
0.1,0.2,0.3,0.4:0.4,0.3,0.2,0.1:c
1.0,2.0,3.0:4.0,5.0,6.0:a
1.5,2.5:4.5,5.5:b
0.5,0.1,0.2,0.3:0.0,0.1,0.2,0.3:c
2.0,1.0,0.0:3.0,2.0,1.0:a
"""

REGRESSION = """@problemname TinyReg
@timestamps false
@univariate true
@equallength true
@targetlabel true
@data
1,2,3,4:0.5
2,3,4,5:1.5
3,4,5,6:2.5
4,5,6,7:3.5
5,6,7,8:4.5
6,7,8,9:5.5
"""


def _write_archive(root: Path, name: str, train: str, test: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}_TRAIN.ts").write_text(train)
    (folder / f"{name}_TEST.ts").write_text(test)
    return folder


def _cfg(kind: str, name: str, *overrides: str):
    return load_cfg(kind, [f"name={name}", *overrides])


# ------------------------------------------------------------------------------ reader


def test_reader_multivariate_unequal_string_labels():
    d = read_ts(VOWELS.splitlines(), "v.ts")
    assert d.task == "classification" and d.class_labels == ("a", "b", "c")
    assert d.dims == 2 and len(d.series) == 10
    assert list(d.lengths[:3]) == [3, 2, 4]
    np.testing.assert_array_equal(d.series[0], [[1, 4], [2, 5], [3, 6]])
    assert d.labels[:3] == ["a", "b", "c"] and d.lines[0] == 10


def test_reader_regression_with_lowercase_keys():
    d = read_ts(REGRESSION.splitlines(), "r.ts")
    assert d.task == "regression" and d.class_labels is None and d.dims == 1
    assert d.labels[0] == "0.5" and d.series[0].shape == (4, 1)


def test_missing_values_are_refused_or_interpolated():
    text = REGRESSION.replace("2,3,4,5:1.5", "2,?,?,5:1.5")
    with pytest.raises(DataError, match=r"r\.ts, line 8, dimension 1, value 2: missing value"):
        read_ts(text.splitlines(), "r.ts")
    d = read_ts(text.splitlines(), "r.ts", missing="interpolate")
    np.testing.assert_allclose(d.series[1][:, 0], [2, 3, 4, 5])
    assert d.n_missing == 2


@pytest.mark.parametrize(("text", "match"), [
    # a file cut in the middle of its last case: the label and the ':' before it are gone
    (VOWELS[: VOWELS.rindex(":a")], r"v\.ts, line 19: 1 dimension\(s\) and a label .*expected 2"),
    (VOWELS.replace("1.5,2.5:4.5,5.5:b", "1.5,2.5:b", 1),
     r"v\.ts, line 11: 1 dimension\(s\).*expected 2 dimension"),
    (VOWELS.replace("1.0,1.0:1.0,1.0:b", "1.0,1.0:1.0,1.0:z"),
     r"v\.ts, line 14: label 'z' is not declared in the header; expected one of \['a', 'b', 'c'\]"),
    (VOWELS[: VOWELS.index("@data") + 6], r"v\.ts: no cases after @data"),
    (VOWELS[: VOWELS.index("@data")], r"v\.ts: no @data line"),
    (VOWELS.replace("2.0,1.0,0.0:3.0,2.0,1.0:a", "2.0,x,0.0:3.0,2.0,1.0:a", 1),
     r"v\.ts, line 13, dimension 1, value 2: 'x' is not a number"),
    (VOWELS.replace("0.5,0.1,0.2,0.3:0.0,0.1,0.2,0.3:c", "0.5,0.1:0.0,0.1,0.2,0.3:c", 1),
     r"v\.ts, line 12: dimensions of lengths \[2, 4\]"),
    (VOWELS.replace("@classLabel true a b c", "@classLabel false"), r"neither @classLabel"),
    (VOWELS.replace("@timeStamps false", "@timeStamps true"), r"line 3: @timeStamps true"),
])
def test_malformed_files_name_file_line_and_expectation(text, match):
    with pytest.raises(DataError, match=match):
        read_ts(text.splitlines(), "v.ts")


# ------------------------------------------------------------------------------ loader


def test_a_dataset_never_seen_before_trains_by_name(tmp_path, make_cfg):
    """Placed in the archive's layout under the data directory; no code or config change."""
    _write_archive(tmp_path, "TinyVowels", VOWELS, VOWELS)
    from bench.train import run

    cfg = make_cfg("dataset=ucr", "dataset.name=TinyVowels", f"data_dir={tmp_path}",
                   "dataset.val_size=3", "model=lstm", "model.topology=bidirectional",
                   "model.hidden_size=4", "batch_size=4")
    result = run(cfg)
    assert result.status == "FINISHED" and "test/accuracy" in result.test_metrics


def test_loader_splits_pads_and_normalises(tmp_path):
    _write_archive(tmp_path / "panel" / "ucr", "TinyVowels", VOWELS, VOWELS)
    p = build(_cfg("ucr", "TinyVowels", "val_size=3"), tmp_path)
    assert (len(p.train), len(p.val), len(p.test)) == (7, 3, 10)
    assert sorted(p.val.y.tolist()) == [0, 1, 2]  # stratified: one case of each class
    assert p.info.seq_len == 4 and p.info.n_features == 2 and p.info.num_classes == 3
    batch = p.test[torch.arange(3)]
    assert batch["lengths"].tolist() == [3, 2, 4]
    assert (batch["x"][1, 2:] == 0).all()  # end padding
    # per-dimension standardisation with training statistics
    train = p.train[torch.arange(len(p.train))]
    valid = torch.cat([train["x"][i, : n] for i, n in enumerate(train["lengths"])])
    torch.testing.assert_close(valid.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(0, correction=0), torch.ones(2), atol=1e-5, rtol=0)
    none = build(_cfg("ucr", "TinyVowels", "val_size=3", "normalize=none"), tmp_path)
    torch.testing.assert_close(none.test[torch.arange(1)]["x"][0, :3, 0],
                               torch.tensor([1.0, 2.0, 3.0]))
    # the majority class of the training cases is the naive prediction everywhere
    assert set(p.test.naive.tolist()) == {int(torch.bincount(p.train.y).argmax())}


def test_regression_problem_and_task_mismatch(tmp_path):
    _write_archive(tmp_path, "TinyReg", REGRESSION, REGRESSION)
    p = build(_cfg("tser", "TinyReg", "val_size=2"), tmp_path)
    assert p.info.task == "regression" and p.info.metric == "rmse"
    assert abs(float(p.train.y.mean())) < 1e-6 and p.test.lengths is None
    with pytest.raises(ConfigError, match="use dataset=tser dataset.name=TinyReg"):
        build(_cfg("ucr", "TinyReg"), tmp_path)


def test_expected_counts_and_bad_names(tmp_path):
    _write_archive(tmp_path, "TinyVowels", VOWELS, VOWELS)
    with pytest.raises(DataError, match=r"10 cases; expected 12 \(dataset.expected.train\)"):
        build(_cfg("ucr", "TinyVowels", "expected.train=12"), tmp_path)
    with pytest.raises(ConfigError, match="dataset.name"):
        build(_cfg("ucr", "../etc"), tmp_path)


def test_offline_message_names_folder_and_archive_url(tmp_path):
    with pytest.raises(DataError) as e:
        build(_cfg("ucr", "NotHere"), tmp_path)
    msg = str(e.value)
    assert "'NotHere' (folder) or 'NotHere.zip'" in msg
    assert "timeseriesclassification.com/aeon-toolkit/NotHere.zip" in msg


def test_holdout_is_stratified_seeded_and_keeps_a_training_case_per_class():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 1)
    a, b = holdout(labels, 0.2, 0, True), holdout(labels, 0.2, 0, True)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(labels[a], minlength=3).tolist() == [4, 2, 0]
    assert not np.array_equal(a, holdout(labels, 0.2, 1, True))
    with pytest.raises(ConfigError, match="dataset.val_size"):
        holdout(labels, 1.5, 0, True)


def _zip(name: str, train: str, test: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/{name}_TRAIN.ts", train)
        zf.writestr(f"{name}/{name}_TEST.ts", test)
    return buf.getvalue()


def test_downloaded_from_the_archive_cached_and_bad_zips_set_aside(server, tmp_path):
    server.files["/TinyVowels.zip"] = _zip("TinyVowels", VOWELS, VOWELS)
    url = "'" + server.url("/{name}.zip") + "'"  # quoted: braces in a Hydra override
    cfg = _cfg("ucr", "TinyVowels", f"url={url}", "val_size=3")
    p = build(cfg, tmp_path)
    assert len(p.test) == 10 and (tmp_path / "panel" / "ucr" / "TinyVowels.zip").exists()
    build(cfg, tmp_path)
    assert server.hits["/TinyVowels.zip"] == 1  # cached
    bad = VOWELS.replace(":c\n", ":q\n", 1)
    server.files["/Broken.zip"] = _zip("Broken", bad, bad)
    with pytest.raises(DataError, match="label 'q' is not declared"):
        build(_cfg("ucr", "Broken", f"url={url}"), tmp_path)
    assert not (tmp_path / "panel" / "ucr" / "Broken.zip").exists()


# --------------------------------------------------------------------------- real files

PANEL = {  # name: (train cases, test cases, steps, dimensions, classes or None)
    "acsf1": (100, 100, 1460, 1, 10), "arrowhead": (36, 175, 251, 1, 3),
    "basicmotions": (40, 40, 100, 6, 4), "gunpoint": (50, 150, 150, 1, 2),
    "italypowerdemand": (67, 1029, 24, 1, 2), "japanesevowels": (270, 370, 29, 12, 9),
    "osuleaf": (200, 242, 427, 1, 6), "plaid": (537, 537, 1344, 1, 11),
    "covid3month": (140, 61, 84, 1, None), "tecator": (172, 43, 100, 1, None),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(PANEL))
def test_real_archive_datasets(name, real_data_dir):
    train, test, steps, dims, classes = PANEL[name]
    p = build(load_cfg(name), real_data_dir)
    assert len(p.train) + len(p.val) == train and len(p.test) == test
    assert (p.info.seq_len, p.info.n_features, p.info.num_classes) == (steps, dims, classes)
    assert torch.isfinite(p.train.x).all()
    if name in ("japanesevowels", "plaid"):
        lengths = torch.cat([p.train.lengths, p.val.lengths, p.test.lengths])
        assert int(lengths.max()) == steps and int(lengths.min()) < steps
        if name == "japanesevowels":
            assert int(lengths.min()) == 7
