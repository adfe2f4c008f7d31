"""Which device each sweep worker trains on, and how many CPU threads it may use.

A worker process is pinned through its environment, set before Python starts:
``CUDA_VISIBLE_DEVICES`` makes its GPU the only one (or the first one) it sees, so the
trainer's ``devices: 1`` lands there. ``hydra.sweeper.devices`` chooses:

* ``null`` / ``auto``: the visible GPUs, one worker each, round-robin when workers
  outnumber GPUs (so 4 workers on 2 GPUs put two on each);
* a list or ``"0,1"`` string of GPU ids, repeats allowed: ``[0, 0, 1, 1]`` puts two
  workers on each of two GPUs (small RNNs leave most of a GPU idle);
* ``shared``: every worker sees every GPU, each with a different one first, so the
  workers spread over the GPUs instead of all training on GPU 0.

One worker in the sweep's own process (``n_jobs=1``) cannot change its visible devices
after start-up; a chosen GPU becomes ``trainer.devices=[index]`` instead. CPU runs
(``trainer.accelerator=cpu``, or no GPU) never set ``CUDA_VISIBLE_DEVICES`` and split the
cores through ``OMP_NUM_THREADS``, which an explicit ``OMP_NUM_THREADS`` overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    """One worker's place: environment additions and a human-readable device."""

    env: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this process may use, as ``CUDA_VISIBLE_DEVICES`` would name them."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no CUDA runtime: CPU workers
        return []


def _chosen(devices: Any, visible: Sequence[str]) -> list[str]:
    if devices in (None, "auto", "shared"):
        return list(visible)
    if isinstance(devices, int):
        return [str(devices)]
    if isinstance(devices, str):
        ids = [d.strip() for d in devices.split(",") if d.strip()]
    else:
        ids = [str(d).strip() for d in devices]
    if not ids:
        raise ConfigError(f"hydra.sweeper.devices={devices!r} names no GPU")
    return ids


def _uses_gpu(accelerator: str) -> bool:
    return str(accelerator).lower() not in ("cpu",)


def plan(n_jobs: int, devices: Any, accelerator: str, *, visible: Sequence[str] | None = None,
         cpu_count: int | None = None,
         environ: Mapping[str, str] | None = None) -> list[Placement]:
    """The placement of each of ``n_jobs`` worker processes.

    ``visible`` and ``cpu_count`` default to this machine's; tests pass fake ones.
    """
    environ = os.environ if environ is None else environ
    visible = visible_gpus(environ) if visible is None else list(visible)
    cpus = cpu_count or os.cpu_count() or 1
    threads = {} if "OMP_NUM_THREADS" in environ else \
        {"OMP_NUM_THREADS": str(max(1, cpus // max(1, n_jobs)))}
    ids = _chosen(devices, visible) if _uses_gpu(accelerator) else []
    if not ids:
        return [Placement(dict(threads), "cpu") for _ in range(n_jobs)]
    out = []
    for i in range(n_jobs):
        if devices == "shared":
            k = i % len(ids)
            order = [*ids[k:], *ids[:k]]
            out.append(Placement({**threads, "CUDA_VISIBLE_DEVICES": ",".join(order)},
                                 f"gpu {order[0]}"))
        else:
            gpu = ids[i % len(ids)]
            out.append(Placement({**threads, "CUDA_VISIBLE_DEVICES": gpu}, f"gpu {gpu}"))
    return out


def in_process_devices(devices: Any, accelerator: str, *,
                       visible: Sequence[str] | None = None) -> list[int] | None:
    """``trainer.devices`` for the one worker in the sweep's process; None keeps the config's.

    Only an explicit choice changes anything: ``auto`` and ``shared`` mean the first visible
    GPU, which is what ``trainer.devices: 1`` gives already.
    """
    if not _uses_gpu(accelerator) or devices in (None, "auto", "shared"):
        return None
    visible = visible_gpus() if visible is None else list(visible)
    if not visible:
        return None
    gpu = _chosen(devices, visible)[0]
    if gpu not in visible:
        raise ConfigError(
            f"hydra.sweeper.devices={devices!r}: GPU {gpu} is not visible to this process "
            f"(visible: {', '.join(visible)}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
    return [visible.index(gpu)]


def describe(trainer_cfg: Any) -> str:
    """Where this process's trials train, for the trial's record (``gpu 3`` or ``cpu``)."""
    if not _uses_gpu(trainer_cfg.accelerator):
        return "cpu"
    try:
        import torch

        if not torch.cuda.is_available():
            return "cpu"
    except Exception:
        return "cpu"
    visible = visible_gpus()
    chosen = trainer_cfg.devices
    index = int(chosen[0]) if isinstance(chosen, Sequence) and not isinstance(chosen, str) \
        and len(chosen) else 0
    return f"gpu {visible[index]}" if index < len(visible) else f"gpu index {index}"
