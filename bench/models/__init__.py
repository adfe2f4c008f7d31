"""Build the configured model for a dataset; size it to a parameter budget if asked."""

from __future__ import annotations

import torch
from torch import nn

from bench.data.base import DatasetInfo
from bench.models.baselines import MLP, Naive
from bench.models.recurrent import RecurrentNet

RECURRENT_CELLS = ("rnn", "lstm", "gru")
CELLS = (*RECURRENT_CELLS, "mlp", "naive")
TOPOLOGIES = ("single", "stacked", "bidirectional", "stacked_bidirectional")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_sizes(mcfg) -> list[int]:
    """Per-layer hidden sizes implied by ``hidden_size``, ``topology`` and ``num_layers``."""
    hs = mcfg.hidden_size
    if not isinstance(hs, int):
        return [int(h) for h in hs]
    layers = int(mcfg.num_layers) if str(mcfg.topology).startswith("stacked") else 1
    return [int(hs)] * layers


def arch_name(mcfg) -> str:
    """A short, stable architecture label used in tags, tables and plots (``gru-stacked``)."""
    if mcfg.cell in RECURRENT_CELLS:
        return f"{mcfg.cell}-{mcfg.topology}"
    return str(mcfg.cell)


def _out_features(info: DatasetInfo) -> int:
    return info.num_classes if info.task == "classification" else 1


def _construct(mcfg, info: DatasetInfo, sizes: list[int]) -> nn.Module:
    common = {"vocab_size": info.vocab_size, "embedding_dim": int(mcfg.get("embedding_dim", 32))}
    if mcfg.cell == "mlp":
        return MLP(
            seq_len=info.seq_len, input_size=info.n_features, hidden_sizes=sizes,
            out_features=_out_features(info), dropout=float(mcfg.dropout), **common,
        )
    return RecurrentNet(
        cell=mcfg.cell, input_size=info.n_features, hidden_sizes=sizes,
        out_features=_out_features(info),
        bidirectional=str(mcfg.topology).endswith("bidirectional"), impl=mcfg.impl,
        dropout=float(mcfg.dropout), recurrent_dropout=float(mcfg.recurrent_dropout),
        reverse=bool(mcfg.reverse), head=mcfg.head, head_hidden=int(mcfg.head_hidden), **common,
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


def build_model(mcfg, info: DatasetInfo) -> nn.Module:
    if mcfg.cell == "naive":
        return Naive(info.num_classes if info.task == "classification" else None)
    base = [int(h) for h in mcfg.hidden_sizes] if mcfg.cell == "mlp" else layer_sizes(mcfg)
    if mcfg.get("param_budget"):
        base = fit_budget(mcfg, info, base, int(mcfg.param_budget))
    model = _construct(mcfg, info, base)
    model.initialise(mcfg.get("init", "pytorch"), mcfg.get("forget_bias"))
    model.layer_sizes = base
    return model


__all__ = ["CELLS", "TOPOLOGIES", "arch_name", "build_model", "n_params", "layer_sizes"]
