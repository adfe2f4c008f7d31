"""A grouped model with one replica broken on purpose: the case a failure must stay inside."""

from __future__ import annotations

import math

import torch


def poison_replica(monkeypatch, index: int = 1) -> type:
    """Every grouped model built from now on carries NaN weights in replica ``index``, so its
    loss is NaN from the first step while the other replicas train normally."""
    from bench import replica_train

    real = replica_train.ReplicaNet

    def poisoned(models):
        net = real(models)
        with torch.no_grad():
            for p in net.parameters():
                p[index] = math.nan
        return net

    monkeypatch.setattr(replica_train, "ReplicaNet", poisoned)
    return real
