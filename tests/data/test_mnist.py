import gzip
import hashlib
import shutil

import pytest
import torch

from bench.data import build
from bench.data.base import DataError
from bench.data.mnist import read_idx
from tests.support.data import FIXTURES, dataset_cfg

NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def fixture_cfg(gz=True, **kw):
    """The real config, pointed at the 300 + 100 image fixture (its checksums are not MNIST's)."""
    suffix = ".gz" if gz else ""
    files = {k: [{"name": v + suffix}] for k, v in NAMES.items()}
    kw = {"expected": {"train": 300, "test": 100}, "val_size": 50, **kw}
    return dataset_cfg("mnist", files=files, **kw)


def all_of(split):
    return split[torch.arange(len(split))]


def test_fixture_shapes_splits_normalisation_and_majority_baseline():
    p = build(fixture_cfg(), FIXTURES)
    assert (len(p.train), len(p.val), len(p.test)) == (250, 50, 100)
    b = all_of(p.train)
    assert b["x"].shape == (250, 28, 28) and b["x"].dtype == torch.float32
    assert b["y"].dtype == torch.long and b["x"].min() >= -0.5 and b["x"].max() <= 0.5
    assert p.info.seq_len == 28 and p.info.n_features == 28 and p.info.num_classes == 10
    majority = int(torch.bincount(b["y"], minlength=10).argmax())
    for split in (p.train, p.val, p.test):
        assert (all_of(split)["naive"] == majority).all()


def test_validation_is_held_out_of_training_seeded_and_disjoint():
    a, b = build(fixture_cfg(), FIXTURES), build(fixture_cfg(), FIXTURES)
    assert torch.equal(all_of(a.val)["x"], all_of(b.val)["x"])
    c = build(fixture_cfg(split_seed=1), FIXTURES)
    assert not torch.equal(all_of(a.val)["x"], all_of(c.val)["x"])
    train = {tuple(r.flatten().tolist()) for r in all_of(a.train)["x"]}
    assert not any(tuple(r.flatten().tolist()) in train for r in all_of(a.val)["x"])


def test_train_limit_and_normalisation_options():
    p = build(fixture_cfg(train_limit=40, normalize="unit"), FIXTURES)
    assert len(p.train) == 40 and all_of(p.train)["x"].min() >= 0


def test_gz_and_uncompressed_read_the_same(tmp_path):
    for name in NAMES.values():
        with gzip.open(FIXTURES / "mnist" / f"{name}.gz") as f:
            (tmp_path / name).write_bytes(f.read())
    a = build(fixture_cfg(), FIXTURES)
    b = build(fixture_cfg(gz=False, subdir=None), tmp_path)
    assert torch.equal(all_of(a.test)["x"], all_of(b.test)["x"])


def _copy(tmp_path):
    d = tmp_path / "mnist"
    shutil.copytree(FIXTURES / "mnist", d)
    return d


def test_truncated_gz_is_reported(tmp_path):
    d = _copy(tmp_path)
    f = d / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*gzip"):
        build(fixture_cfg(), tmp_path)


def test_truncated_and_mistyped_idx_are_reported(tmp_path):
    good = read_idx(FIXTURES / "mnist" / "t10k-images-idx3-ubyte.gz")
    raw = bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    f = tmp_path / "x-idx3-ubyte"
    f.write_bytes(raw + good.tobytes()[:-10])
    with pytest.raises(DataError, match=r"78390 data bytes, expected 78400 .*truncated"):
        read_idx(f)
    f.write_bytes(b"\x00\x00\x0d\x03" + raw[4:] + good.tobytes())
    with pytest.raises(DataError, match="data type 0x0d; expected 0x08"):
        read_idx(f)
    f.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not an IDX magic number"):
        read_idx(f)


def test_count_mismatch_is_reported():
    with pytest.raises(DataError, match="300 train images; expected 60000"):
        build(fixture_cfg(expected={"train": 60000, "test": 100}), FIXTURES)


def test_checksum_mismatch_of_a_placed_file_is_reported(tmp_path):
    _copy(tmp_path)
    cfg = fixture_cfg()
    cfg.files.train_labels = [{"name": "train-labels-idx1-ubyte.gz", "md5": "0" * 32,
                               "url": "https://example.org/train-labels-idx1-ubyte.gz"}]
    with pytest.raises(DataError, match="md5 mismatch: expected 0{32}"):
        build(cfg, tmp_path)


def test_download_path_from_local_server(server, tmp_path):
    files = {}
    for key, name in NAMES.items():
        body = (FIXTURES / "mnist" / f"{name}.gz").read_bytes()
        server.files[f"/mnist/{name}.gz"] = body
        files[key] = [{"name": f"{name}.gz", "url": server.url(f"/mnist/{name}.gz"),
                       "md5": hashlib.md5(body).hexdigest()}]
    cfg = fixture_cfg()
    cfg.files = files
    p = build(cfg, tmp_path)
    assert len(p.test) == 100 and (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    # a cached file corrupted later is fetched again, not reused
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    build(cfg, tmp_path)
    assert server.hits["/mnist/t10k-labels-idx1-ubyte.gz"] == 2
    assert server.hits["/mnist/t10k-images-idx3-ubyte.gz"] == 1


@pytest.mark.realdata
def test_real_mnist_sizes(real_data_dir):
    p = build(dataset_cfg("mnist"), real_data_dir)
    assert (len(p.train), len(p.val), len(p.test)) == (55_000, 5_000, 10_000)
    assert all_of(p.val)["x"].shape == (5000, 28, 28)
