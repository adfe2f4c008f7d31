"""Baselines run through the same pipeline as the recurrent models.

``Naive`` has no weights: its predictions are the ``naive`` field every batch carries
(persistence for forecasting, the training set's majority class for classification), so
the baseline is scored by exactly the metric code and batches the models are.
``MLP`` is the tutorials' "basic machine-learning approach": the window flattened
through dense layers.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.precision import as_float32, float32_region


class Naive(nn.Module):
    is_naive = True

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes

    def predict(self, naive: torch.Tensor) -> torch.Tensor:
        if self.num_classes:
            return nn.functional.one_hot(naive.long(), self.num_classes).float()
        return naive.float()


class MLP(nn.Module):
    # set by ``bench.models.build_model``: the per-layer widths it built (recorded as a
    # param), and how many vocabulary words a pretrained embedding file held
    layer_sizes: list[int]
    pretrained_words: int | None = None

    def __init__(
        self,
        *,
        seq_len: int,
        input_size: int,
        hidden_sizes: list[int],
        out_features: int,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        embedding_dim: int = 32,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size else None
        width = seq_len * (embedding_dim if vocab_size else input_size)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def initialise(self, scheme: str, forget_bias: float | None = None) -> None:
        from bench.models.init import init_dense

        init_dense(self, scheme)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # Unequal-length inputs arrive zero-padded to the split's longest sequence: the
        # flattened window has a fixed width and the padding is a constant, so no mask.
        # float32 inside autocast too, like the recurrent networks it is compared with
        with float32_region(x):
            if self.embedding is not None:
                x = self.embedding(x)
            return self.net(as_float32(x))
