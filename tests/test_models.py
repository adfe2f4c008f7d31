"""Architectures: every cell x topology x impl, fused vs hand-written equivalence, init, sizing."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import DatasetInfo
from bench.models import build_model, n_params
from bench.models.cells import LoopLayer
from bench.vocab import RECURRENT_CELLS, TOPOLOGIES

CLS = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                  seq_len=7, n_features=5, num_classes=3)
REG = DatasetInfo(name="t", task="regression", metric="mae", direction="minimize",
                  seq_len=7, n_features=5)
TOK = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                  seq_len=7, n_features=1, num_classes=2, vocab_size=50)


def mcfg(**kw):
    base = dict(cell="gru", impl="fused", topology="single", num_layers=2, hidden_size=6,
                dropout=0.0, recurrent_dropout=0.0, reverse=False, head="linear", head_hidden=4,
                init="pytorch", forget_bias=1.0, embedding_dim=4, param_budget=None)
    base.update(kw)
    return OmegaConf.create(base)


@pytest.mark.parametrize(("cell", "topology", "impl"),
                         list(itertools.product(RECURRENT_CELLS, TOPOLOGIES, ("fused", "cell"))))
def test_every_architecture_trains_a_step(cell, topology, impl):
    torch.manual_seed(0)
    model = build_model(mcfg(cell=cell, topology=topology, impl=impl, dropout=0.1), CLS)
    x = torch.randn(4, 7, 5)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model(x).shape == (4, 3)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(("cell", "topology"), list(itertools.product(RECURRENT_CELLS, TOPOLOGIES)))
@pytest.mark.parametrize("init", ["pytorch", "keras"])
def test_fused_and_hand_written_agree(cell, topology, init):
    torch.manual_seed(1)
    fused = build_model(mcfg(cell=cell, topology=topology, init=init, head="mlp"), REG)
    loop = build_model(mcfg(cell=cell, topology=topology, init=init, head="mlp", impl="cell"), REG)
    assert fused.state_dict().keys() == loop.state_dict().keys()
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    fused, loop = fused.double().eval(), loop.double().eval()
    out_f, out_l = fused(x), loop(x)
    torch.testing.assert_close(out_f, out_l, rtol=1e-9, atol=1e-9)
    out_f.sum().backward()
    out_l.sum().backward()
    for (name, pf), (_, pl_) in zip(fused.named_parameters(), loop.named_parameters(), strict=True):
        torch.testing.assert_close(pf.grad, pl_.grad, rtol=1e-7, atol=1e-9, msg=name)


def test_bidirectional_summary_is_both_final_states():
    torch.manual_seed(0)
    model = build_model(mcfg(topology="bidirectional", hidden_size=4), REG).eval()
    rnn = model.layers[0].rnn
    x = torch.randn(2, 7, 5)
    out, _ = rnn(x)
    captured = {}
    model.head.register_forward_hook(lambda m, inp, o: captured.setdefault("s", inp[0]))
    model(x)
    # forward direction: its last step; backward direction: its state after reaching t=0
    expected = torch.cat([out[:, -1, :4], out[:, 0, 4:]], -1)
    torch.testing.assert_close(captured["s"], expected)
    assert not torch.allclose(out[:, -1, 4:], out[:, 0, 4:])


def test_reverse_feeds_time_backwards():
    torch.manual_seed(0)
    fwd = build_model(mcfg(), REG).eval()
    rev = build_model(mcfg(reverse=True), REG).eval()
    rev.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 7, 5)
    torch.testing.assert_close(rev(x), fwd(x.flip(1)))


def test_recurrent_dropout_uses_one_mask_per_sequence():
    torch.manual_seed(0)
    h = 64
    layer = LoopLayer("rnn", h, h, bidirectional=False)
    with torch.no_grad():
        layer.rnn.weight_ih_l0.copy_(torch.eye(h))
        layer.rnn.weight_hh_l0.copy_(torch.eye(h))
        layer.rnn.bias_ih_l0.zero_()
        layer.rnn.bias_hh_l0.zero_()
    x = torch.zeros(3, 10, h)
    x[:, 0] = 1.0  # only the first step has input; later states come from the recurrence
    layer.train()
    out, _ = layer(x, recurrent_dropout=0.5)
    zero_at = [(out[:, t] == 0) for t in range(1, 10)]
    # Units dropped at step 1 stay dropped at every later step and no other unit drops:
    # a fresh mask per step would zero a growing set of units.
    for z in zero_at[1:]:
        assert torch.equal(z, zero_at[0])
    assert 0 < zero_at[0].float().mean() < 1


def test_lstm_forget_bias_and_keras_init():
    torch.manual_seed(0)
    for impl in ("fused", "cell"):
        model = build_model(mcfg(cell="lstm", impl=impl, init="keras", forget_bias=1.0), REG)
        p = dict(model.layers[0].rnn.named_parameters())
        h = 6
        assert torch.all(p["bias_ih_l0"][h : 2 * h] == 1.0)
        assert torch.all(p["bias_hh_l0"] == 0.0)
        assert torch.all(p["bias_ih_l0"][:h] == 0.0)
        # one orthogonal (gates*H, H) matrix, as Keras's (H, gates*H) kernel transposed
        w = p["weight_hh_l0"]
        torch.testing.assert_close(w.T @ w, torch.eye(h), atol=1e-5, rtol=0)
    default = build_model(mcfg(cell="lstm", forget_bias=None), REG)
    assert not torch.all(default.layers[0].rnn.bias_ih_l0[6:12] == 1.0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "mlp"])
@pytest.mark.parametrize("budget", [2_000, 20_000])
def test_param_budget_sizes_the_model(cell, budget):
    kw = {"hidden_sizes": [8, 8], "dropout": 0.0} if cell == "mlp" else {"topology": "stacked"}
    model = build_model(mcfg(cell=cell, param_budget=budget, **kw), CLS)
    assert abs(n_params(model) - budget) / budget < 0.06


def test_token_inputs_get_an_embedding():
    model = build_model(mcfg(embedding_dim=4), TOK)
    out = model(torch.randint(0, 50, (3, 7)))
    assert out.shape == (3, 2)
    assert model.embedding.num_embeddings == 50


@pytest.mark.parametrize(("cell", "topology", "impl"),
                         list(itertools.product(RECURRENT_CELLS, TOPOLOGIES, ("fused", "cell"))))
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_is_never_read_as_data(cell, topology, impl, reverse):
    """A short series padded to a batch's longer length gives the outputs it gives alone."""
    torch.manual_seed(2)
    model = build_model(mcfg(cell=cell, topology=topology, impl=impl, reverse=reverse), REG)
    model = model.double().eval()
    short, long_ = torch.randn(1, 4, 5, dtype=torch.float64), torch.randn(1, 7, 5,
                                                                          dtype=torch.float64)
    padded = torch.cat([torch.cat([short, torch.full((1, 3, 5), 9.0, dtype=torch.float64)], 1),
                        long_])
    out = model(padded, torch.tensor([4, 7]))
    torch.testing.assert_close(out[0], model(short)[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out[1], model(long_)[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("cell", "topology"), list(itertools.product(RECURRENT_CELLS, TOPOLOGIES)))
def test_fused_and_hand_written_agree_on_unequal_lengths(cell, topology):
    torch.manual_seed(3)
    fused = build_model(mcfg(cell=cell, topology=topology), REG).double().eval()
    loop = build_model(mcfg(cell=cell, topology=topology, impl="cell"), REG).double().eval()
    loop.load_state_dict(fused.state_dict())
    x, lengths = torch.randn(4, 7, 5, dtype=torch.float64), torch.tensor([7, 2, 5, 1])
    out_f, out_l = fused(x, lengths), loop(x, lengths)
    torch.testing.assert_close(out_f, out_l, rtol=1e-9, atol=1e-9)
    out_f.sum().backward()
    out_l.sum().backward()
    for (name, pf), (_, pl_) in zip(fused.named_parameters(), loop.named_parameters(), strict=True):
        torch.testing.assert_close(pf.grad, pl_.grad, rtol=1e-7, atol=1e-9, msg=name)


def test_mlp_accepts_lengths_and_ignores_them():
    model = build_model(mcfg(cell="mlp", hidden_sizes=[8]), REG).eval()
    x = torch.randn(2, 7, 5)
    torch.testing.assert_close(model(x, torch.tensor([3, 7])), model(x))
