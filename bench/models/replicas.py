"""K copies of one architecture computed as one model, their weights on a replica axis.

The runs of a study cell differ only in seed or fold. On small data each of them spends
its time in per-operation overhead, not arithmetic, so K of them stepped together cost
little more than one: every matmul becomes one batched matmul (``bmm``/``baddbmm``) over
the replica axis. ``torch.func.vmap`` cannot do this for the fused kernels (no batching
rule for ``aten::gru.input``), so the recurrence is the hand-written cell arithmetic of
``bench.models.cells.LoopLayer``, gate for gate.

A ``ReplicaNet`` is built *from* K ordinary single models, so each replica starts from
exactly the weights its own seed gave, and any replica's weights are written back into an
ordinary single model, so its best epoch is tested and recorded as if it had run alone.
The stacked parameters are keyed by the single model's own parameter names, which makes
both directions a plain stack / index of the state dict.

Inputs are ``(K, B, T, F)``: each replica reads its own batch. Dropout masks are drawn per
replica and per sequence (like the single model's), but from one random stream, so a
replica's masks are not the ones its seed would draw alone; with dropout 0 a replica
computes what its single model computes, which the tests check.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.baselines import MLP
from bench.models.cells import GATES, recur, step_masks, summarise
from bench.models.precision import as_float32, float32_region
from bench.models.recurrent import RecurrentNet


def _key(name: str) -> str:
    # ParameterDict keys cannot hold dots
    return name.replace(".", "__")


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x @ w.T + b`` per replica: x (K, N, in), w (K, out, in), b (K, out)."""
    if b is None:
        return torch.bmm(x, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of ``(K, B, T, F)`` reversed within its own length (its own inverse)."""
    if lengths is None:
        return x.flip(2)
    steps = torch.arange(x.shape[2], device=x.device)
    n = lengths.to(x.device).unsqueeze(-1)
    idx = torch.where(steps < n, n - 1 - steps, steps)
    return x.gather(2, idx.unsqueeze(-1).expand_as(x))


def _sequence_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """One dropout mask per replica and sequence, shared by its time steps (``(K, B, 1, F)``)."""
    keep = x.new_full((x.shape[0], x.shape[1], 1, x.shape[-1]), 1 - p)
    return torch.bernoulli(keep) / (1 - p)


class ReplicaNet(nn.Module):
    """K replicas of one ``RecurrentNet`` or ``MLP``, computed together."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("ReplicaNet needs at least one model")
        first = models[0]
        kinds = {type(m) for m in models}
        if len(kinds) != 1 or not isinstance(first, RecurrentNet | MLP):
            raise TypeError("ReplicaNet groups RecurrentNet or MLP models of one architecture, "
                            f"got {sorted(k.__name__ for k in kinds)}")
        self.k = len(models)
        self.kind = "mlp" if isinstance(first, MLP) else "recurrent"
        self.names = [n for n, _ in first.named_parameters()]
        shapes = {n: p.shape for n, p in first.named_parameters()}
        stacked = nn.ParameterDict()
        for m in models:
            own = dict(m.named_parameters())
            if list(own) != self.names or any(own[n].shape != shapes[n] for n in own):
                raise ValueError("ReplicaNet: the models differ in architecture")
        with torch.no_grad():
            for n in self.names:
                params = [dict(m.named_parameters())[n] for m in models]
                p = nn.Parameter(torch.stack([q.detach() for q in params]).clone(),
                                 requires_grad=params[0].requires_grad)
                stacked[_key(n)] = p
        self.stacked = stacked
        if isinstance(first, MLP):
            self._mlp_layout(first)
        else:
            self._recurrent_layout(first)

    # -- layout read off the single model -------------------------------------------------

    def _mlp_layout(self, m: MLP) -> None:
        self.has_embedding = m.embedding is not None
        self.dense = []  # (name prefix, relu after, dropout after)
        modules = list(m.net)
        for i, mod in enumerate(modules):
            if isinstance(mod, nn.Linear):
                relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
                self.dense.append((f"net.{i}", relu))
        drops = [mod.p for mod in modules if isinstance(mod, nn.Dropout)]
        self.dropout = drops[0] if drops else 0.0

    def _recurrent_layout(self, m: RecurrentNet) -> None:
        self.has_embedding = m.embedding is not None
        self.cell, self.reverse, self.summary = m.cell, m.reverse, m.summary
        self.dropout, self.recurrent_dropout = m.dropout, m.recurrent_dropout
        self.layers = [(f"layers.{i}.rnn", layer.hidden_size, layer.bidirectional)
                       for i, layer in enumerate(m.recurrent_layers())]
        if isinstance(m.head, nn.Linear):
            self.head = [("head", False)]
        else:
            self.head = [("head.0", True), ("head.2", False)]

    def p(self, name: str) -> torch.Tensor:
        return self.stacked[_key(name)]

    # -- moving weights between the single models and the replicas ------------------------

    @torch.no_grad()
    def load_replica(self, k: int, model: nn.Module) -> None:
        """Overwrites replica ``k`` with a single model's weights."""
        own = dict(model.named_parameters())
        for n in self.names:
            self.p(n)[k].copy_(own[n])

    @torch.no_grad()
    def write_replica(self, k: int, model: nn.Module,
                      state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Replica ``k``'s current weights, or a saved ``replica_state``, into a single model."""
        own = dict(model.named_parameters())
        for n in self.names:
            own[n].copy_(self.p(n)[k] if state is None else state[n])
        return model

    @torch.no_grad()
    def keep(self, positions: list[int]) -> None:
        """Keeps only the replicas at ``positions`` (in that order); new parameter objects,
        so an optimiser over the old ones must be rebuilt or told (``ReplicaOptimizer``)."""
        for n in self.names:
            old = self.p(n)
            self.stacked[_key(n)] = nn.Parameter(old.detach()[positions].clone(),
                                                 requires_grad=old.requires_grad)
        self.k = len(positions)

    def replica_state(self, k: int) -> dict[str, torch.Tensor]:
        """Replica ``k``'s weights under the single model's names (a copy)."""
        return {n: self.p(n)[k].detach().clone() for n in self.names}

    # -- forward --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (K, B, T, F) or token ids (K, B, T); ``lengths`` (K, B) or None."""
        with float32_region(x):
            x = as_float32(x)
            if self.has_embedding:
                x = self._embed(x)
            if self.kind == "mlp":
                return self._mlp(x)
            return self._recurrent(x, lengths)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.p("embedding.weight")  # (K, V, E)
        k, v, _ = w.shape
        offset = torch.arange(k, device=ids.device).view(k, *([1] * (ids.dim() - 1))) * v
        return nn.functional.embedding(ids + offset, w.reshape(k * v, -1))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        k, b = x.shape[:2]
        h = x.reshape(k, b, -1)
        for name, relu in self.dense:
            h = _linear(h, self.p(f"{name}.weight"), self.p(f"{name}.bias"))
            if relu:
                h = torch.relu(h)
                if self.training and self.dropout > 0:
                    h = nn.functional.dropout(h, self.dropout)
        return h

    def _recurrent(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is not None:
            # as the single model trims a batch to its longest sequence; with per-step
            # freezing, steps past every length change nothing
            x = x[:, :, : int(lengths.max())]
        if self.reverse:
            x = _reverse_padded(x, lengths)
        summary: torch.Tensor | None = None
        for prefix, hidden, bidirectional in self.layers:
            if self.training and self.dropout > 0:
                x = x * _sequence_mask(x, self.dropout)
            outs, finals = [], []
            for sfx in (["", "_reverse"] if bidirectional else [""]):
                seq = _reverse_padded(x, lengths) if sfx else x
                out, h = self._direction(seq, prefix, sfx, hidden, lengths)
                outs.append(_reverse_padded(out, lengths) if sfx else out)
                finals.append(h)
            x, summary = torch.cat(outs, -1), torch.cat(finals, -1)
        if summary is None:
            raise ValueError("ReplicaNet: a recurrent model without recurrent layers")
        summary = summarise(self.summary, x, summary, lengths)
        for name, relu in self.head:
            summary = _linear(summary, self.p(f"{name}.weight"), self.p(f"{name}.bias"))
            if relu:
                summary = torch.relu(summary)
        return summary

    def _direction(self, x: torch.Tensor, prefix: str, sfx: str, hidden: int,
                   lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        k, b, t, f = x.shape
        w_ih, b_ih = self.p(f"{prefix}.weight_ih_l0{sfx}"), self.p(f"{prefix}.bias_ih_l0{sfx}")
        w_hh = self.p(f"{prefix}.weight_hh_l0{sfx}").transpose(1, 2)  # (K, H, G)
        b_hh = self.p(f"{prefix}.bias_hh_l0{sfx}").unsqueeze(1)  # (K, 1, G)
        # the input projection of every step in one batched matmul; only the recurrence
        # is sequential
        xi = _linear(x.reshape(k, b * t, f), w_ih, b_ih).view(k, b, t, GATES[self.cell] * hidden)
        mask = None
        if self.training and self.recurrent_dropout > 0:
            keep = x.new_full((k, b, hidden), 1 - self.recurrent_dropout)
            mask = torch.bernoulli(keep) / (1 - self.recurrent_dropout)
        h = x.new_zeros(k, b, hidden)
        c = x.new_zeros(k, b, hidden)
        # one unbind before the loop: indexing inside it makes the backward quadratic in T
        outs, h = recur(self.cell, xi.unbind(2), step_masks(lengths, t, x.device), h, c, mask,
                        lambda hr: torch.baddbmm(b_hh, hr, w_hh))
        return torch.stack(outs, 2), h
