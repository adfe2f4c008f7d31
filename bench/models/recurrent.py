"""``RecurrentNet``: (embedding) -> recurrent layers -> summary -> head.

One class covers every cell x topology, so architectures differ only in the knobs the
study compares. Layers are built one by one (not ``num_layers=`` of a fused module) so a
stack may change width per layer (the textbook's GRU 32 then GRU 64) and both
implementations wire identically.

Precision: see ``bench.models.precision`` (float32 always, inside autocast too).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.cells import (
    FusedLayer,
    LoopLayer,
    make_layer,
    reverse_padded,
    sequence_mask,
    summarise,
)
from bench.models.init import init_dense, init_recurrent
from bench.models.precision import as_float32, float32_region


def make_head(kind: str, in_features: int, out_features: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
    )


class RecurrentNet(nn.Module):
    # set by ``bench.models.build_model``: the per-layer widths it built (recorded as a
    # param), and how many vocabulary words a pretrained embedding file held
    layer_sizes: list[int]
    pretrained_words: int | None = None

    def __init__(
        self,
        *,
        cell: str,
        input_size: int,
        hidden_sizes: list[int],
        out_features: int,
        bidirectional: bool = False,
        impl: str = "fused",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        reverse: bool = False,
        head: str = "linear",
        head_hidden: int = 64,
        summary: str = "last",
        vocab_size: int | None = None,
        embedding_dim: int = 32,
    ):
        super().__init__()
        self.cell, self.reverse, self.summary = cell, reverse, summary
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size else None
        width = embedding_dim if vocab_size else input_size
        directions = 2 if bidirectional else 1
        layers = []
        for h in hidden_sizes:
            layers.append(make_layer(impl, cell, width, h, bidirectional))
            width = h * directions
        self.layers = nn.ModuleList(layers)
        self.head = make_head(head, width, out_features, head_hidden)

    def recurrent_layers(self) -> list[FusedLayer | LoopLayer]:
        """The layers with their own type (a ``ModuleList`` yields plain modules)."""
        return [layer for layer in self.layers if isinstance(layer, FusedLayer | LoopLayer)]

    def initialise(self, scheme: str, forget_bias: float | None) -> None:
        for layer in self.recurrent_layers():
            init_recurrent(layer, self.cell, scheme, forget_bias)
        init_dense(self.head, scheme)
        if self.embedding is not None:
            init_dense(self.embedding, scheme)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,): true lengths of end-padded sequences; None when all are full."""
        with float32_region(x):
            return self._forward(as_float32(x), lengths)

    def _forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        host_lengths = None
        if lengths is not None:
            # Packing needs the lengths on the host: one copy per batch (a device sync with
            # unequal lengths), shared by the trim and every fused layer; masks and
            # reversals keep using the device copy, so they add no host round trip.
            host_lengths = lengths.cpu()
            # a batch of short sequences need not run over the whole split's padding
            x = x[:, : int(host_lengths.max())]
        if self.embedding is not None:
            x = self.embedding(x)
        if self.reverse:
            x = reverse_padded(x, lengths)
        final = None
        for layer in self.recurrent_layers():
            if self.training and self.dropout > 0:
                x = x * sequence_mask(x, self.dropout)
            own = host_lengths if isinstance(layer, FusedLayer) else lengths
            x, final = layer(x, self.recurrent_dropout, own)
        if final is None:
            raise ValueError("RecurrentNet: no recurrent layers")
        # ``last`` is each direction's final state (for a backward direction, its state after
        # reading back to t=0), never output[:, -1], where it has seen one step.
        return self.head(summarise(self.summary, x, final, lengths))
