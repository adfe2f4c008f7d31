"""Weight initialisation schemes.

The reference numbers come from Keras, whose recurrent layers start from Glorot-uniform
input kernels, orthogonal recurrent kernels and zero biases; PyTorch starts everything
from U(-1/sqrt(H), 1/sqrt(H)) and trails by several points on IMDB. The LSTM forget-gate
bias of 1 follows Jozefowicz et al. (2015), who found it closes much of the LSTM-GRU gap.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.models.cells import FusedLayer, LoopLayer


def _glorot_uniform_(w: torch.Tensor) -> None:
    # Keras stores the kernel as (input, gates*hidden); the bound uses both dimensions.
    fan_out, fan_in = w.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(w, -bound, bound)


@torch.no_grad()
def init_recurrent(layer: FusedLayer | LoopLayer, cell: str, scheme: str, forget_bias: float | None) -> None:
    hidden = layer.hidden_size
    for name, p in layer.named_cell_parameters():
        if scheme == "keras":
            if name.startswith("weight_ih"):
                _glorot_uniform_(p)
            elif name.startswith("weight_hh"):
                # Keras draws its (H, gates*H) recurrent kernel as one orthogonal matrix;
                # PyTorch stores the transpose, so one call on the whole weight matches it.
                nn.init.orthogonal_(p)
            else:
                p.zero_()
        if cell == "lstm" and forget_bias is not None and name.startswith("bias"):
            # Gate order i, f, g, o; the two biases add, so put it all on one.
            p[hidden : 2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0


@torch.no_grad()
def init_dense(module: nn.Module, scheme: str) -> None:
    if scheme != "keras":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
