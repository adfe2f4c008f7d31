"""Pretrained word vectors: the vocabulary mapping, missing words, freezing, bad files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import ConfigError, DataError, DatasetInfo
from bench.data.glove import embedding_matrix
from bench.models import build_model

VOCAB = ("", "", "the", "movie", "zzyzx", "good")
GLOVE = "the 0.1 0.2 0.3\nmovie 1.0 -1.0 0.5\ngood 0.0 0.5 1.0\nunused 9 9 9\n"
TOK = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                  seq_len=4, n_features=1, num_classes=2, vocab_size=len(VOCAB),
                  vocabulary=VOCAB)


def _spec(path, **kw):
    return OmegaConf.create({"pretrained": str(path), "freeze": True, "missing": "zeros", **kw})


def test_matrix_maps_the_vocabulary_and_zeros_missing_words(tmp_path):
    (tmp_path / "g.txt").write_text(GLOVE)
    m, found = embedding_matrix(_spec(tmp_path / "g.txt"), VOCAB, 3, tmp_path)
    assert found == 3 and m.shape == (6, 3)
    torch.testing.assert_close(m[2], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(m[5], torch.tensor([0.0, 0.5, 1.0]))
    assert (m[4] == 0).all() and (m[0] == 0).all()
    r, _ = embedding_matrix(_spec("g.txt", missing="random"), VOCAB, 3, tmp_path)
    assert (r[4] != 0).all() and r[4].abs().max() <= 0.05 and (r[0] == 0).all()
    torch.testing.assert_close(r[3], m[3])


def test_zip_member_by_published_name(tmp_path):
    (tmp_path / "glove").mkdir()
    with zipfile.ZipFile(tmp_path / "glove" / "glove.6B.zip", "w") as zf:
        zf.writestr("glove.6B.3d.txt", GLOVE)
        zf.writestr("glove.6B.2d.txt", "the 1 2\n")
    m, found = embedding_matrix(_spec("glove.6B.3d"), VOCAB, 3, tmp_path)
    assert found == 3 and float(m[3, 0]) == 1.0


def test_bad_files_and_settings_are_refused_with_the_line(tmp_path):
    (tmp_path / "bad.txt").write_text(GLOVE.replace("movie 1.0 -1.0 0.5", "movie 1.0 -1.0"))
    with pytest.raises(DataError, match=r"bad.txt, line 2: 2 values; expected 3"):
        embedding_matrix(_spec(tmp_path / "bad.txt"), VOCAB, 3, tmp_path)
    (tmp_path / "g.txt").write_text(GLOVE)
    with pytest.raises(ConfigError, match="model.embedding_dim: 5.*expected model.embedding_dim=3"):
        embedding_matrix(_spec(tmp_path / "g.txt"), VOCAB, 5, tmp_path)
    with pytest.raises(DataError, match="no usable copy"):
        embedding_matrix(_spec(tmp_path / "absent.txt"), VOCAB, 3, tmp_path)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_vectors_stay_put_after_a_training_step(tmp_path, freeze):
    (tmp_path / "g.txt").write_text(GLOVE)
    mcfg = OmegaConf.create(dict(
        cell="gru", impl="fused", topology="single", num_layers=1, hidden_size=4, dropout=0.0,
        recurrent_dropout=0.0, reverse=False, head="linear", head_hidden=4, init="keras",
        forget_bias=1.0, embedding_dim=3, param_budget=None,
        embedding={"pretrained": str(tmp_path / "g.txt"), "freeze": freeze, "missing": "zeros"}))
    model = build_model(mcfg, TOK, tmp_path)
    before = model.embedding.weight.detach().clone()
    torch.testing.assert_close(before[3], torch.tensor([1.0, -1.0, 0.5]))  # init overwritten
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    x = torch.tensor([[2, 3, 4, 5], [5, 4, 3, 2]])
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    opt.step()
    changed = not torch.equal(before, model.embedding.weight.detach())
    assert changed is (not freeze)
    assert np.isfinite(model.embedding.weight.detach().numpy()).all()


def test_imdb_run_with_pretrained_vectors(make_cfg, tmp_path, monkeypatch):
    """End to end on the review fixture: the vocabulary of the loaded split meets the file."""
    from pathlib import Path

    from bench.train import run

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    fixtures = Path(__file__).resolve().parent / "fixtures"
    (tmp_path / "g.txt").write_text(GLOVE)
    cfg = make_cfg(
        "dataset=imdb", f"data_dir={fixtures}", "dataset.sources=[{name: aclImdb_small.tar.gz}]",
        "dataset.expected.train=150", "dataset.expected.test=150", "dataset.val_size=30",
        "dataset.num_words=500", "dataset.maxlen=20", "model=mlp", "model.embedding_dim=3",
        f"model.embedding.pretrained={tmp_path / 'g.txt'}")
    result = run(cfg)
    assert result.status == "FINISHED"
