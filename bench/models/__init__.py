"""Build the configured model for a dataset; size it to a parameter budget if asked."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.data.base import ConfigError, DatasetInfo
from bench.models.baselines import MLP, Naive
from bench.models.recurrent import RecurrentNet
from bench.vocab import RECURRENT_CELLS, is_stacked


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_sizes(mcfg) -> list[int]:
    """Per-layer hidden sizes implied by ``hidden_size``, ``topology`` and ``num_layers``."""
    hs = mcfg.hidden_size
    if not isinstance(hs, int):
        return [int(h) for h in hs]
    layers = int(mcfg.num_layers) if is_stacked(mcfg.topology) else 1
    return [int(hs)] * layers


def arch_name(mcfg) -> str:
    """A short, stable architecture label used in tags, tables and plots (``gru-stacked``)."""
    if mcfg.cell in RECURRENT_CELLS:
        return f"{mcfg.cell}-{mcfg.topology}"
    return str(mcfg.cell)


def _out_features(info: DatasetInfo) -> int:
    if info.task != "classification":
        return 1
    if not info.num_classes:
        raise ConfigError(f"dataset {info.name}: a classification dataset must state its "
                          "number of classes (DatasetInfo.num_classes)")
    return info.num_classes


def _construct(mcfg, info: DatasetInfo, sizes: list[int]) -> MLP | RecurrentNet:
    vocab_size, embedding_dim = info.vocab_size, int(mcfg.get("embedding_dim", 32))
    if mcfg.cell == "mlp":
        return MLP(
            seq_len=info.seq_len, input_size=info.n_features, hidden_sizes=sizes,
            out_features=_out_features(info), dropout=float(mcfg.dropout),
            vocab_size=vocab_size, embedding_dim=embedding_dim,
        )
    return RecurrentNet(
        cell=mcfg.cell, input_size=info.n_features, hidden_sizes=sizes,
        out_features=_out_features(info),
        bidirectional=str(mcfg.topology).endswith("bidirectional"), impl=mcfg.impl,
        dropout=float(mcfg.dropout), recurrent_dropout=float(mcfg.recurrent_dropout),
        reverse=bool(mcfg.reverse), head=mcfg.head, head_hidden=int(mcfg.head_hidden),
        summary=str(mcfg.get("summary", "last")),
        vocab_size=vocab_size, embedding_dim=embedding_dim,
    )


def _count(mcfg, info: DatasetInfo, sizes: list[int]) -> int:
    with torch.device("meta"):
        return n_params(_construct(mcfg, info, sizes))


def fit_budget(mcfg, info: DatasetInfo, base: list[int], budget: int) -> list[int]:
    """Scale all layer widths by one factor so the model has about ``budget`` parameters.

    Counts come from models built on the meta device (no memory, no init), and the count
    grows with the scale, so a bisection over the scale finds the closest width.
    """
    def sizes(scale: float) -> list[int]:
        return [max(1, round(b * scale)) for b in base]

    lo, hi = 1e-3, 1.0
    while _count(mcfg, info, sizes(hi)) < budget:
        hi *= 2
        if hi > 1e4:
            break
    for _ in range(40):
        mid = (lo + hi) / 2
        if _count(mcfg, info, sizes(mid)) < budget:
            lo = mid
        else:
            hi = mid
    best = min((sizes(lo), sizes(hi)), key=lambda s: abs(_count(mcfg, info, s) - budget))
    return best


def load_pretrained_embedding(model: MLP | RecurrentNet, mcfg, info: DatasetInfo,
                              data_dir) -> None:
    """Overwrites the initialised embedding with pretrained vectors (``model.embedding``)."""
    spec = mcfg.get("embedding") or {}
    if not spec.get("pretrained"):
        return
    from bench.data import default_data_dir
    from bench.data.glove import embedding_matrix

    embedding = model.embedding
    if embedding is None:
        raise ConfigError("model.embedding.pretrained: set, but the dataset feeds no tokens; "
                          "expected a token dataset such as dataset=imdb")
    matrix, found = embedding_matrix(
        spec, info.vocabulary, int(mcfg.embedding_dim),
        Path(data_dir) if data_dir else default_data_dir(), seed=int(spec.get("seed", 0)))
    with torch.no_grad():
        embedding.weight.copy_(matrix)
    embedding.weight.requires_grad_(not bool(spec.get("freeze", True)))
    model.pretrained_words = found


def build_model(mcfg, info: DatasetInfo, data_dir=None) -> nn.Module:
    if mcfg.cell == "naive":
        return Naive(info.num_classes if info.task == "classification" else None)
    base = [int(h) for h in mcfg.hidden_sizes] if mcfg.cell == "mlp" else layer_sizes(mcfg)
    if mcfg.get("param_budget"):
        base = fit_budget(mcfg, info, base, int(mcfg.param_budget))
    model = _construct(mcfg, info, base)
    model.initialise(mcfg.get("init", "pytorch"), mcfg.get("forget_bias"))
    load_pretrained_embedding(model, mcfg, info, data_dir)
    model.layer_sizes = base
    return model


__all__ = ["arch_name", "build_model", "n_params", "layer_sizes"]
