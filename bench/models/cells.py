"""Recurrent layers in two implementations that share one parameter layout.

``FusedLayer`` wraps ``nn.RNN/GRU/LSTM`` (cuDNN / oneDNN kernels). ``LoopLayer`` is the
textbook loop over time with explicit gates. Both register the same parameter names
and shapes as a one-layer PyTorch module (``weight_ih_l0``, ``bias_hh_l0_reverse``...), so a
state dict moves between them unchanged and the equivalence test compares like with like.
Only the loop can apply *recurrent* dropout with one mask per sequence (Gal & Ghahramani
2016), which the fused kernels cannot.

Sequences of unequal length arrive padded at the end with a ``lengths`` tensor. Padding
must never be read as data: the fused layer packs the batch, the loop freezes each
sequence's state once its length is reached, and a backward direction reads each sequence
from its own last step, not from the padding. Outputs at padded steps are zero in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
FUSED = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _suffixes(bidirectional: bool) -> list[str]:
    return ["", "_reverse"] if bidirectional else [""]


def sequence_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A dropout mask shared by every time step of each sequence (``(B, 1, F)``)."""
    keep = torch.full((x.shape[0], 1, x.shape[-1]), 1 - p, device=x.device, dtype=x.dtype)
    return torch.bernoulli(keep) / (1 - p)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence reversed within its own length; the padding stays at the end.

    Its own inverse, so the same call puts a backward direction's outputs back in time order.
    """
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)
    n = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(steps < n, n - 1 - steps, steps)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


def step_masks(lengths: torch.Tensor | None, t: int,
               device: torch.device) -> tuple[torch.Tensor | None, ...]:
    """Per time step, which sequences are still inside their length (``(..., 1)`` booleans
    over the batch dimensions of ``lengths``); all None when every sequence is full."""
    if lengths is None:
        return (None,) * t
    live = torch.arange(t, device=device) < lengths.to(device).unsqueeze(-1)
    return live.unsqueeze(-1).unbind(-2)


def cell_step(cell: str, gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor,
              c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the cell from its input and recurrent projections (PyTorch's gate order
    and formulas, so the loop matches the fused kernels); ``c`` is the LSTM's cell state,
    passed through unchanged by the others."""
    if cell == "rnn":
        return torch.tanh(gx + gh), c
    if cell == "gru":
        xr, xz, xn = gx.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c
    i, f, g, o = (gx + gh).chunk(4, -1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def recur(cell: str, steps: Sequence[torch.Tensor], alive: Sequence[torch.Tensor | None],
          h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None,
          recurrent: Callable[[torch.Tensor], torch.Tensor],
          ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The recurrence over time: each step's outputs and the final state.

    Shared by the single loop (``LoopLayer``) and the grouped one
    (``bench.models.replicas``), which differ only in how the recurrent projection
    ``recurrent(h)`` is batched, so a replica computes its single model's arithmetic.
    """
    outs = []
    for gx, live in zip(steps, alive, strict=True):
        hr = h if mask is None else h * mask
        h_new, c_new = cell_step(cell, gx, recurrent(hr), h, c)
        if live is None:
            h, c = h_new, c_new
            outs.append(h)
        else:
            # past its length a sequence keeps its state and emits zeros, as packing does
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
            outs.append(h_new * live)
    return outs, h


def summarise(kind: str, outputs: torch.Tensor, final: torch.Tensor,
              lengths: torch.Tensor | None) -> torch.Tensor:
    """What the head reads of a sequence: ``last``, each direction's final state (the state
    after the whole sequence, for a backward direction after reading back to t=0); ``mean`` or
    ``max``, the last layer's outputs pooled over each sequence's own steps.

    Pooling lets a class that shows anywhere in a long series reach the head without
    surviving hundreds of recurrent steps. ``outputs`` is ``(..., T, D)`` with zeros at
    padded steps; ``lengths`` ``(...)`` or None when every sequence is full.
    """
    if kind == "last":
        return final
    t = outputs.shape[-2]
    if kind == "mean":
        if lengths is None:
            return outputs.mean(-2)
        return outputs.sum(-2) / lengths.to(outputs.device).unsqueeze(-1).to(outputs.dtype)
    if kind == "max":
        if lengths is None:
            return outputs.amax(-2)
        live = torch.arange(t, device=outputs.device) < lengths.to(outputs.device).unsqueeze(-1)
        return outputs.masked_fill(~live.unsqueeze(-1), float("-inf")).amax(-2)
    raise ValueError(f"model.summary: {kind!r}; expected one of last, mean, max")


class FusedLayer(nn.Module):
    """One recurrent layer (one or two directions) on the fused kernel."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, bidirectional: bool):
        super().__init__()
        self.cell, self.hidden_size, self.bidirectional = cell, hidden_size, bidirectional
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = FUSED[cell](
            input_size, hidden_size, batch_first=True, bidirectional=bidirectional, **kwargs
        )

    def forward(self, x: torch.Tensor, recurrent_dropout: float = 0.0,
                lengths: torch.Tensor | None = None):
        if lengths is None:
            out, h = self.rnn(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, h = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=x.shape[1]
            )
        h_n = h[0] if self.cell == "lstm" else h
        # h_n: (directions, B, H); the backward direction's final state is its state after
        # reading the whole sequence backwards, i.e. at time 0.
        return out, torch.cat(list(h_n), dim=-1)

    def named_cell_parameters(self):
        return self.rnn.named_parameters()


class LoopLayer(nn.Module):
    """The same layer as ``FusedLayer``, written as an explicit loop over time."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, bidirectional: bool):
        super().__init__()
        self.cell, self.hidden_size, self.bidirectional = cell, hidden_size, bidirectional
        g = GATES[cell] * hidden_size
        bound = 1 / math.sqrt(hidden_size)
        # Nested under ``rnn`` like FusedLayer's module, so state-dict keys match exactly.
        self.rnn = nn.Module()
        for sfx in _suffixes(bidirectional):
            for name, shape in (
                (f"weight_ih_l0{sfx}", (g, input_size)),
                (f"weight_hh_l0{sfx}", (g, hidden_size)),
                (f"bias_ih_l0{sfx}", (g,)),
                (f"bias_hh_l0{sfx}", (g,)),
            ):
                # PyTorch's own default for recurrent layers: U(-1/sqrt(H), 1/sqrt(H)).
                self.rnn.register_parameter(
                    name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                )

    def named_cell_parameters(self):
        return self.rnn.named_parameters()

    def _direction(self, x: torch.Tensor, sfx: str, mask: torch.Tensor | None,
                   lengths: torch.Tensor | None):
        w_hh = getattr(self.rnn, f"weight_hh_l0{sfx}")
        b_hh = getattr(self.rnn, f"bias_hh_l0{sfx}")
        # Input projections for all steps at once; only the recurrence is sequential.
        xi = torch.nn.functional.linear(
            x, getattr(self.rnn, f"weight_ih_l0{sfx}"), getattr(self.rnn, f"bias_ih_l0{sfx}")
        )
        b, t, _ = x.shape
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        # One unbind before the loop: indexing ``xi[:, s]`` inside it makes autograd build
        # a full (B, T, G) gradient per step, a backward quadratic in T.
        outs, h = recur(self.cell, xi.unbind(1), step_masks(lengths, t, x.device),
                        h, c, mask, lambda hr: torch.nn.functional.linear(hr, w_hh, b_hh))
        return torch.stack(outs, 1), h

    def forward(self, x: torch.Tensor, recurrent_dropout: float = 0.0,
                lengths: torch.Tensor | None = None):
        outs, finals = [], []
        for sfx in _suffixes(self.bidirectional):
            mask = None
            if self.training and recurrent_dropout > 0:
                keep = x.new_full((x.shape[0], self.hidden_size), 1 - recurrent_dropout)
                mask = torch.bernoulli(keep) / (1 - recurrent_dropout)
            seq = reverse_padded(x, lengths) if sfx else x
            out, h = self._direction(seq, sfx, mask, lengths)
            outs.append(reverse_padded(out, lengths) if sfx else out)
            finals.append(h)
        return torch.cat(outs, -1), torch.cat(finals, -1)


def make_layer(impl: str, cell: str, input_size: int, hidden_size: int,
               bidirectional: bool) -> FusedLayer | LoopLayer:
    cls = FusedLayer if impl == "fused" else LoopLayer
    return cls(cell, input_size, hidden_size, bidirectional)
