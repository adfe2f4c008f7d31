"""Replicas computed together equal the same models computed one by one."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import DatasetInfo
from bench.models import build_model
from bench.models.replicas import ReplicaNet

CLS = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                  seq_len=7, n_features=5, num_classes=3)
TOK = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                  seq_len=7, n_features=1, num_classes=2, vocab_size=50)
CELLS = ("rnn", "lstm", "gru")
TOPOLOGIES = ("single", "stacked", "bidirectional", "stacked_bidirectional")
K = 3


def mcfg(**kw):
    base = dict(cell="gru", impl="fused", topology="single", num_layers=2, hidden_size=6,
                dropout=0.0, recurrent_dropout=0.0, reverse=False, head="linear", head_hidden=4,
                init="pytorch", forget_bias=1.0, embedding_dim=4, param_budget=None,
                hidden_sizes=[8, 4])
    base.update(kw)
    return OmegaConf.create(base)


def singles(cfg, info=CLS, k=K):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model(cfg, info).double())
    return out


def _check_forward(models, x, lengths=None):
    grouped = ReplicaNet(models)
    got = grouped(x, lengths)
    for k, m in enumerate(models):
        want = m(x[k], None if lengths is None else lengths[k])
        torch.testing.assert_close(got[k], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("cell", "topology"), list(itertools.product(CELLS, TOPOLOGIES)))
def test_grouped_forward_equals_fused_single_models(cell, topology):
    models = singles(mcfg(cell=cell, topology=topology))
    torch.manual_seed(9)
    _check_forward(models, torch.randn(K, 4, 7, 5, dtype=torch.float64))


@pytest.mark.parametrize("cell", CELLS)
def test_unequal_lengths_reverse_and_mlp_head(cell):
    models = singles(mcfg(cell=cell, topology="stacked_bidirectional", reverse=True,
                          head="mlp"))
    torch.manual_seed(9)
    lengths = torch.randint(2, 8, (K, 4))
    x = torch.randn(K, 4, 7, 5, dtype=torch.float64)
    x = x * (torch.arange(7) < lengths.unsqueeze(-1)).unsqueeze(-1)
    _check_forward(models, x, lengths)


@pytest.mark.parametrize(("cell", "summary"), [("gru", "mean"), ("lstm", "max"),
                                               ("rnn", "mean")])
def test_pooled_summaries_equal_the_single_models(cell, summary):
    """Mean and max over each sequence's own steps, padding excluded, per replica."""
    models = singles(mcfg(cell=cell, topology="stacked_bidirectional", summary=summary))
    torch.manual_seed(9)
    x = torch.randn(K, 4, 7, 5, dtype=torch.float64)
    _check_forward(models, x)
    lengths = torch.randint(2, 8, (K, 4))
    x = x * (torch.arange(7) < lengths.unsqueeze(-1)).unsqueeze(-1)
    _check_forward(models, x, lengths)
    loops = singles(mcfg(cell=cell, impl="cell", topology="bidirectional", summary=summary))
    _check_forward(loops, x, lengths)


def test_a_pooled_summary_reads_no_padding():
    """A sequence padded with steps past its length summarises as the sequence alone."""
    for summary in ("mean", "max"):
        torch.manual_seed(0)
        m = build_model(mcfg(cell="gru", topology="bidirectional", summary=summary),
                        CLS).double()
        x = torch.randn(1, 4, 5, dtype=torch.float64)
        padded = torch.cat([x, torch.full((1, 3, 5), 7.0, dtype=torch.float64)], 1)
        torch.testing.assert_close(m(padded, torch.tensor([4])), m(x))


def test_tokens_and_the_mlp():
    models = singles(mcfg(cell="lstm", topology="bidirectional"), TOK)
    ids = torch.randint(0, 50, (K, 4, 7))
    grouped = ReplicaNet(models)
    for k, m in enumerate(models):
        torch.testing.assert_close(grouped(ids)[k], m(ids[k]))
    mlps = singles(mcfg(cell="mlp"))
    _check_forward(mlps, torch.randn(K, 4, 7, 5, dtype=torch.float64))


@pytest.mark.parametrize("cell", ("lstm", "mlp"))
def test_gradients_per_replica_equal_the_single_models(cell):
    models = singles(mcfg(cell=cell, topology="stacked"))
    grouped = ReplicaNet(models)
    x = torch.randn(K, 4, 7, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (K, 4))
    out = grouped(x)
    sum(torch.nn.functional.cross_entropy(out[k], y[k]) for k in range(K)).backward()
    for k, m in enumerate(models):
        torch.nn.functional.cross_entropy(m(x[k]), y[k]).backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(grouped.p(name).grad[k], p.grad)


def test_weights_round_trip_into_a_single_model():
    models = singles(mcfg(cell="gru", topology="bidirectional", init="keras"))
    grouped = ReplicaNet(models)
    with torch.no_grad():
        for p in grouped.parameters():
            p.add_(0.5)
    fresh = singles(mcfg(cell="gru", topology="bidirectional", init="keras"), k=1)[0]
    grouped.write_replica(2, fresh)
    x = torch.randn(K, 4, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(grouped(x)[2], fresh(x[2]))
    grouped.load_replica(0, fresh)
    torch.testing.assert_close(grouped(x)[0], fresh(x[0]))


def test_lstm_forget_bias_is_kept_per_replica():
    models = singles(mcfg(cell="lstm", forget_bias=1.0))
    b = ReplicaNet(models).p("layers.0.rnn.bias_ih_l0")
    assert torch.all(b[:, 6:12] == 1.0)


@pytest.mark.parametrize("cfg", [dict(cell="gru", impl="cell", topology="stacked", dropout=0.3,
                                      recurrent_dropout=0.3),
                                 dict(cell="mlp", dropout=0.3)])
def test_each_replica_draws_its_own_dropout_masks(cfg):
    """Identical replicas on identical inputs differ in training only through their masks."""
    torch.manual_seed(0)
    model = build_model(mcfg(**cfg), CLS).double()
    grouped = ReplicaNet([model] * K)
    x = torch.randn(1, 4, 7, 5, dtype=torch.float64).expand(K, -1, -1, -1)
    out = grouped.train()(x)
    assert not torch.allclose(out[0], out[1])
    out = grouped.eval()(x)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[0], model.eval()(x[0]))
