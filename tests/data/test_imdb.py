import os
import tarfile

import numpy as np
import pytest
import torch

from bench.data import build
from bench.data.base import DataError
from bench.data.download import Located, Source
from bench.data.imdb import OOV, PAD, _tokenised, pad, read_reviews, tokenize
from tests.support.data import FIXTURES, dataset_cfg

TAR = "aclImdb_small.tar.gz"


def fixture_cfg(**kw):
    """The real config on the 300-review fixture (75 per split and class)."""
    base = {"sources": [{"name": "aclImdb", "is_dir": True}, {"name": TAR}],
            "expected": {"train": 150, "test": 150}, "val_size": 30, "num_words": 500,
            "maxlen": 100}
    return dataset_cfg("imdb", **{**base, **kw})


def all_of(split):
    return split[torch.arange(len(split))]


def test_tokenizer_is_keras_like():
    assert tokenize("Great movie!<br /><br />I'd SEE it again... 10/10") == [
        "great", "movie", "i'd", "see", "it", "again", "10", "10"]


def test_pad_pre_and_post_like_keras():
    ids, offsets = np.array([5, 6, 7, 8, 9]), np.array([0, 2, 5])
    assert pad(ids, offsets, np.array([0, 1]), 3, "pre", "pre").tolist() == [[0, 5, 6], [7, 8, 9]]
    assert pad(ids, offsets, np.array([1]), 2, "pre", "pre").tolist() == [[8, 9]]
    assert pad(ids, offsets, np.array([1]), 2, "post", "post").tolist() == [[7, 8]]
    assert pad(ids, offsets, np.array([0]), 3, "post", "post").tolist() == [[5, 6, 0]]


def test_fixture_splits_tokens_and_baseline():
    p = build(fixture_cfg(), FIXTURES)
    assert (len(p.train), len(p.val), len(p.test)) == (120, 30, 150)
    b = all_of(p.train)
    assert b["x"].dtype == torch.long and b["x"].shape == (120, 100)
    assert p.info.vocab_size == 502 and int(b["x"].max()) < 502
    assert p.info.seq_len == 100 and p.info.n_features == 1
    short = (b["x"] == PAD).any(1)
    assert short.any() and (b["x"][short][:, -1] != PAD).all()  # 'pre' padding: zeros in front
    majority = int(torch.bincount(b["y"], minlength=2).argmax())
    assert (all_of(p.test)["naive"] == majority).all()
    assert set(all_of(p.test)["y"].tolist()) == {0, 1}


def test_vocabulary_is_fitted_on_training_reviews_only():
    cfg = fixture_cfg(num_words=100_000)
    loc = Located(FIXTURES / "imdb" / TAR, Source(TAR), "", False)
    arrays = _tokenised(cfg, loc, FIXTURES)
    reviews = read_reviews(loc, None)
    train_words = {w for r, s in zip(reviews, arrays["split"], strict=True) if s == 0
                   for w in tokenize(r[3])}
    other_words = {w for r, s in zip(reviews, arrays["split"], strict=True) if s != 0
                   for w in tokenize(r[3])}
    vocab = set(arrays["vocab"].tolist())
    assert vocab == train_words and other_words - train_words
    # a word seen only in validation/test reviews is out-of-vocabulary
    p = build(cfg, FIXTURES)
    assert (all_of(p.test)["x"] == OOV).any()


def test_extracted_folder_equals_tarball(tmp_path):
    with tarfile.open(FIXTURES / "imdb" / TAR) as tar:
        tar.extractall(tmp_path / "imdb", filter="data")
    a = build(fixture_cfg(), FIXTURES)
    b = build(fixture_cfg(), tmp_path)
    assert torch.equal(all_of(a.val)["x"], all_of(b.val)["x"])
    assert torch.equal(all_of(a.test)["y"], all_of(b.test)["y"])


def test_token_cache_is_reused_and_keyed_by_settings_and_source(tmp_path):
    cache = tmp_path / "preprocessed"
    (tmp_path / "imdb").mkdir()
    src = tmp_path / "imdb" / TAR
    src.write_bytes((FIXTURES / "imdb" / TAR).read_bytes())
    build(fixture_cfg(), tmp_path)
    assert len(list(cache.glob("imdb-tokens-*.npz"))) == 1
    build(fixture_cfg(maxlen=50), tmp_path)  # padding only: same token cache
    assert len(list(cache.glob("imdb-tokens-*.npz"))) == 1
    build(fixture_cfg(num_words=50), tmp_path)
    assert len(list(cache.glob("imdb-tokens-*.npz"))) == 2
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a replaced source file
    build(fixture_cfg(), tmp_path)
    assert len(list(cache.glob("imdb-tokens-*.npz"))) == 3
    for f in cache.glob("imdb-tokens-*.npz"):
        f.write_bytes(b"damaged")
    p = build(fixture_cfg(), tmp_path)  # a damaged cache is rebuilt, not trusted
    assert len(p.train) == 120


def test_truncated_tarball_is_reported(tmp_path):
    (tmp_path / "imdb").mkdir()
    data = (FIXTURES / "imdb" / TAR).read_bytes()
    (tmp_path / "imdb" / TAR).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{TAR}: cannot be read as a tar archive"):
        build(fixture_cfg(), tmp_path)


def test_wrong_counts_are_reported():
    with pytest.raises(DataError, match=r"75 reviews in aclImdb/test/neg; expected 12500"):
        build(fixture_cfg(expected={"train": 150, "test": 25000}), FIXTURES)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_imdb_sizes(real_data_dir):
    p = build(dataset_cfg("imdb"), real_data_dir)
    assert (len(p.train), len(p.val), len(p.test)) == (20_000, 5_000, 25_000)
    assert p.info.vocab_size == 10_002
    assert all_of(p.val)["x"].shape == (5000, 500)


def test_limits_take_a_mixed_subset_not_one_label():
    p = build(fixture_cfg(train_limit=40, test_limit=40), FIXTURES)
    for split in (p.train, p.test):
        assert len(split) == 40 and 0 < int(all_of(split)["y"].sum()) < 40
