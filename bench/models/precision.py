"""Every model computes in float32, inside an autocast region too.

Autocast treats the recurrent kernels unevenly. On CUDA the cuDNN RNN wrapper casts
weights, input and state to float16 (``aten/src/ATen/cudnn/AutocastRNN.cpp``), with no loss
scaling under ``bf16-mixed``; on the CPU (bfloat16) the fused GRU stays float32 while the
fused LSTM and RNN drop to bfloat16, and the hand-written LSTM and GRU cells are promoted
back to float32 while the RNN cell is not. The study compares architectures, so they must
not differ in arithmetic: the models switch autocast off around themselves, and
``trainer=gpu`` runs ``32-true`` (small recurrent models gain little from half precision).
"""

from __future__ import annotations

import contextlib

import torch


def float32_region(x: torch.Tensor):
    """Autocast off for the enclosed computation; a no-op context outside autocast."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.autocast(device, enabled=False)
    return contextlib.nullcontext()


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs widened; float64 (the equivalence tests) and token ids kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
