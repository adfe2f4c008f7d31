"""``python -m bench.gpu_check``: every GPU-specific path of the harness, one line per check.

No test machine has a GPU, so the paths that only a GPU takes (half-precision kernels,
on-device batches, host syncs, the caching allocator, workers pinned to devices) are
exercised here, in a few minutes, whenever a GPU is at hand; ``--report`` writes the
output to ``reports/gpu_check.md``. On a CPU the same command runs what the CPU can show
and names each check it skips with the reason, so CI keeps the script itself working
(``--quick`` there: no sweep, one precision for the training runs).

Each line: ``ok``, ``FAIL`` (the exit code is 1 if any), ``note`` (a fact to read, such as
a non-deterministic kernel) or ``skip``, then the check and what it found.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils._python_dispatch import TorchDispatchMode

from bench.console import drop_known_warnings
from bench.vocab import RECURRENT_CELLS, TOPOLOGIES

if TYPE_CHECKING:
    from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT

IMPLS = ("fused", "cell")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
BASE = ["dataset=synthetic", "trainer=smoke", "model.hidden_size=8", "optim.name=sgd",
        "optim.lr=0.01"]

drop_known_warnings()


@dataclass
class Line:
    status: str  # ok | FAIL | note | skip
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def _cuda() -> bool:
    return torch.cuda.is_available()


def _device() -> torch.device:
    return torch.device("cuda", 0) if _cuda() else torch.device("cpu")


def _accelerator() -> str:
    return "gpu" if _cuda() else "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cfg(*overrides: str):
    from bench.config import compose

    return compose([*BASE, *overrides])


def _precisions(quick: bool = False) -> tuple[list[str], str | None]:
    """The precisions this machine can run, and why the others are left out."""
    if _cuda():
        wanted = list(PRECISIONS[:1] if quick else PRECISIONS)
        if "bf16-mixed" in wanted and not torch.cuda.is_bf16_supported():
            wanted.remove("bf16-mixed")
            return wanted, "bf16-mixed: this GPU has no bfloat16"
        return wanted, None
    wanted = ["32-true"] if quick else ["32-true", "bf16-mixed"]
    return wanted, "16-mixed needs CUDA (Lightning turns it into bf16 on the CPU)"


class HostReads(TorchDispatchMode):
    """Counts ``.item()`` / ``bool()`` / ``int()`` of tensors: on CUDA each is a sync."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class SyncCounter(Callback):
    """Host syncs inside training and validation batches only (not epoch ends, not setup).

    On CUDA through ``torch.cuda.set_sync_debug_mode`` (it sees syncs inside kernels'
    launch code too, such as ``torch.unique``); on the CPU through the dispatcher.
    """

    def __init__(self) -> None:
        self.per_batch: list[int] = []
        self._mode: HostReads | None = None
        self._warned: list | None = None
        self._ctx: warnings.catch_warnings[list[warnings.WarningMessage]] | None = None

    def _start(self):
        if _cuda():
            self._ctx = warnings.catch_warnings(record=True)
            self._warned = self._ctx.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        else:
            self._mode = HostReads()
            self._mode.__enter__()

    def _stop(self):
        if _cuda():
            torch.cuda.set_sync_debug_mode("default")
            n = sum("synchroniz" in str(w.message) for w in self._warned)
            self._ctx.__exit__(None, None, None)
        else:
            self._mode.__exit__(None, None, None)
            n = self._mode.count
        self.per_batch.append(n)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stop()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        self._stop()


def _fit(cfg, precision: str = "32-true", callbacks=(), train_batches: int = 2):
    """A few real batches through Lightning: the harness's module, data module and model."""
    from bench import data
    from bench.data.module import BenchDataModule
    from bench.models import build_model
    from bench.task import BenchTask, apply_fp32_policy

    dm = BenchDataModule(lambda: data.build(cfg.dataset, cfg.data_dir),
                         batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                         seed=cfg.seed, on_device=cfg.trainer.on_device)
    info = dm.prepare().info
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task = BenchTask(build_model(cfg.model, info), info, cfg.dataset.loss, dict(cfg.optim))
    apply_fp32_policy(bool(cfg.trainer.get("tf32", False)))
    trainer = pl.Trainer(
        accelerator=_accelerator(), devices=1, max_epochs=1,
        precision=cast("_PRECISION_INPUT", precision),  # a name from PRECISIONS
        limit_train_batches=train_batches, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=list(callbacks),
    )
    trainer.fit(task, datamodule=dm)
    return task


@contextlib.contextmanager
def _quiet():
    """Lightning's per-Trainer banners would drown the one-line-per-check output."""
    import logging

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# -- the checks -----------------------------------------------------------------------------


def check_environment(quick: bool) -> list[Line]:
    import lightning

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}",
             f"lightning {lightning.__version__}"]
    if not _cuda():
        return [Line("ok", "environment", ", ".join(parts) + "; no CUDA device: "
                     "CUDA-only checks are skipped below")]
    props = torch.cuda.get_device_properties(0)
    parts += [f"CUDA {torch.version.cuda}", f"cuDNN {torch.backends.cudnn.version()}",
              f"{torch.cuda.device_count()} GPU(s), GPU 0 {props.name} "
              f"({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})",
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}"]
    return [Line("ok", "environment", ", ".join(parts))]


def _model(cell, topology, impl, info):
    from bench.models import build_model

    cfg = _cfg(f"model={cell}", f"model.topology={topology}", f"model.impl={impl}",
               "model.head=mlp")
    return build_model(cfg.model, info)


def _reg_info():
    from bench.data.base import DatasetInfo

    return DatasetInfo(name="check", task="regression", metric="mae", direction="minimize",
                       seq_len=24, n_features=5)


def check_dtypes_and_equivalence(quick: bool) -> list[Line]:
    """Every cell x topology x impl: output dtype under each precision, fused vs cell."""
    device, info = _device(), _reg_info()
    precisions, why = _precisions()
    x = torch.randn(16, 24, 5, device=device)
    lengths = torch.randint(1, 25, (16,), device=device)
    lines = []
    for precision in precisions:
        with _quiet():
            trainer = pl.Trainer(accelerator=_accelerator(), devices=1,
                                 precision=cast("_PRECISION_INPUT", precision),  # PRECISIONS
                                 logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False)
        dtypes: dict[str, list[str]] = {}
        worst = 0.0
        for cell, topology in itertools.product(RECURRENT_CELLS, TOPOLOGIES):
            torch.manual_seed(0)
            fused = _model(cell, topology, "fused", info).to(device).eval()
            loop = _model(cell, topology, "cell", info).to(device).eval()
            loop.load_state_dict(fused.state_dict())
            seen: list[torch.dtype] = []
            hooks = [layer.register_forward_hook(lambda _m, _i, o, s=seen: s.append(o[0].dtype))
                     for m in (fused, loop) for layer in m.layers]
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for lens in (None, lengths):
                    out_f, out_l = fused(x, lens), loop(x, lens)
                    worst = max(worst, float((out_f.float() - out_l.float()).abs().max()))
                    seen += [out_f.dtype, out_l.dtype]
            for h in hooks:
                h.remove()
            for dt in seen:
                dtypes.setdefault(str(dt).replace("torch.", ""), []).append(f"{cell}-{topology}")
        one = len(dtypes) == 1 and "float32" in dtypes
        lines.append(Line("ok" if one else "FAIL", f"dtypes under {precision}",
                          "every cell x topology x impl, every layer: "
                          + ", ".join(sorted(dtypes)) + ("" if one else f" ({dtypes})")))
        tol = 1e-4
        lines.append(Line("ok" if worst <= tol else "FAIL", f"fused = cell under {precision}",
                          f"max |fused - cell| {worst:.2e} over 24 models, equal and unequal "
                          f"lengths (tolerance {tol:g})"))
    if why:
        lines.append(Line("skip", "dtypes / fused = cell", why))
    return lines


def check_on_device_batches(quick: bool) -> list[Line]:
    if not _cuda():
        return [Line("skip", "on-device batches = host batches", "needs CUDA")]
    from bench import data

    lines = []
    for dataset in ("synthetic", "synthetic_series"):
        cfg = _cfg(f"dataset={dataset}")
        prepared = data.build(cfg.dataset, cfg.data_dir)
        host, dev = prepared.train, prepared.train.to(_device(), {})
        idx = torch.randperm(len(host))[:64]
        a, b = host[idx], dev[idx.to(_device())]
        same = a.keys() == b.keys() and all(
            b[k].device.type == "cuda" and torch.equal(a[k], b[k].cpu()) for k in a)
        lines.append(Line("ok" if same else "FAIL", f"on-device batches = host batches "
                          f"({dataset})", f"64 shuffled rows, fields {sorted(a)}, "
                          f"{'identical' if same else 'DIFFERENT'}"))
    return lines


def check_runs(quick: bool) -> list[Line]:
    precisions, why = _precisions(quick)
    lines = []
    for precision in precisions:
        failed, t0 = [], time.perf_counter()
        for cell, topology, impl in itertools.product(RECURRENT_CELLS, TOPOLOGIES, IMPLS):
            cfg = _cfg(f"model={cell}", f"model.topology={topology}", f"model.impl={impl}")
            try:
                with _quiet():
                    _fit(cfg, precision)
            except Exception as exc:  # report every failing architecture, not only the first
                failed.append(f"{cell}-{topology}-{impl}: {type(exc).__name__}: {exc}"[:200])
        n = len(RECURRENT_CELLS) * len(TOPOLOGIES) * len(IMPLS)
        detail = (f"{n - len(failed)}/{n} cell x topology x impl trained 2 batches and "
                  f"validated ({time.perf_counter() - t0:.0f} s)")
        lines.append(Line("FAIL" if failed else "ok", f"runs under {precision}",
                          detail + ("; " + "; ".join(failed[:3]) if failed else "")))
    if quick:
        lines.append(Line("skip", "runs under the other precisions", "--quick"))
    if why:
        lines.append(Line("skip", "runs under 16-mixed", why))
    return lines


def check_syncs(quick: bool) -> list[Line]:
    counter = SyncCounter()
    with _quiet():
        _fit(_cfg("model=gru"), callbacks=[counter], train_batches=5)
    how = ("torch.cuda.set_sync_debug_mode" if _cuda()
           else "CPU: host reads counted at aten._local_scalar_dense")
    total = sum(counter.per_batch)
    return [Line("ok" if total == 0 else "FAIL", "host syncs in training + validation batches",
                 f"{total} in {len(counter.per_batch)} batches (per batch "
                 f"{counter.per_batch}; {how}; SGD: Adam keeps its step count on the host)")]


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}


def check_same_seed(quick: bool) -> list[Line]:
    lines = []
    for impl in IMPLS:
        cfg = _cfg("model=lstm", f"model.impl={impl}", "model.topology=bidirectional")
        with _quiet():
            a, b = _weights(_fit(cfg, train_batches=3)), _weights(_fit(cfg, train_batches=3))
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        if diff == 0:
            lines.append(Line("ok", f"same seed twice ({impl} LSTM)", "identical weights "
                              "after 3 training batches"))
        else:
            lines.append(Line("note", f"same seed twice ({impl} LSTM)",
                              f"weights differ by up to {diff:.2e} after 3 batches (cuDNN's "
                              "RNN backward is documented non-deterministic; "
                              "trainer.deterministic=true asks for deterministic kernels)"))
    return lines


def check_memory(quick: bool) -> list[Line]:
    """Three runs back to back with the sweep worker's release between them."""
    from bench.sweep.worker import release_memory
    from bench.task import BenchTask

    cfg = _cfg("model=gru", "model.hidden_size=64", "dataset.n_samples=4000")
    after = []
    for _ in range(3):
        with _quiet():
            _fit(cfg)
        release_memory()
        live = sum(type(o) is BenchTask for o in gc.get_objects())
        if _cuda():
            after.append((live, torch.cuda.memory_allocated(), torch.cuda.memory_reserved()))
        else:
            after.append((live, 0, 0))
    lives = [a[0] for a in after]
    if not _cuda():
        return [Line("ok" if lives == [0, 0, 0] else "FAIL", "memory after 3 runs",
                     f"live modules after each release {lives}; CUDA allocator: needs CUDA")]
    alloc = [a[1] for a in after]
    reserved = [a[2] for a in after]
    ok = lives == [0, 0, 0] and alloc[2] <= alloc[0]
    return [Line("ok" if ok else "FAIL", "memory after 3 runs",
                 f"live modules {lives}; allocated {[f'{b / 2**20:.1f}' for b in alloc]} MiB, "
                 f"reserved {[f'{b / 2**20:.1f}' for b in reserved]} MiB after each release")]


def step_ms(model: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    """Median ms of forward + backward on ``x``."""
    device, times = x.device, []
    for i in range(steps + 2):
        _sync(device)
        t0 = time.perf_counter()
        model(x).sum().backward()
        _sync(device)
        if i >= 2:  # two warm-up steps: allocator, cuDNN plans
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def check_step_time(quick: bool) -> list[Line]:
    from bench.data.base import DatasetInfo

    device = _device()
    info = DatasetInfo(name="jena_shaped", task="regression", metric="mae",
                       direction="minimize", seq_len=240, n_features=14)
    lines = []
    for t in (240,) if quick else (240, 500):
        x = torch.randn(128, t, 14, device=device)
        ms = {}
        for impl in IMPLS:
            torch.manual_seed(0)
            m = _model("gru", "single", impl, info).to(device)
            ms[impl] = step_ms(m, x, 3 if device.type == "cpu" else 20)
        lines.append(Line("ok", f"ms per step, GRU 32, B 128, T {t} ({device.type})",
                          f"fused {ms['fused']:.1f}, cell {ms['cell']:.1f} "
                          f"({ms['cell'] / ms['fused']:.1f}x)"))
    return lines


def check_sweep(quick: bool) -> list[Line]:
    if quick:
        return [Line("skip", "two-worker sweep", "--quick")]
    import bench.sweep

    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        previous = Path.cwd()
        os.chdir(tmp)
        try:
            overrides = ["dataset=synthetic", "trainer=smoke", "tracking.experiment=gpu_check",
                         f"tracking.uri=sqlite:///{tmp}/mlflow.db",
                         f"trainer.accelerator={_accelerator()}"]
            t0 = time.perf_counter()
            with _quiet():
                study = bench.sweep.tune(overrides, "recurrent", study_name="gpu_check",
                                         storage=f"sqlite:///{tmp}/optuna.db", n_trials=4,
                                         n_jobs=2, pruner="none", seed=0)
            wall = time.perf_counter() - t0
        finally:
            os.chdir(previous)
    trials = study.get_trials()
    placed = ", ".join(f"trial {t.number}: {t.user_attrs.get('device')} "
                       f"(pid {t.user_attrs.get('pid')})" for t in trials)
    done = sum(t.state.name == "COMPLETE" for t in trials)
    pids = {t.user_attrs.get("pid") for t in trials}
    ok = done == 4 and len(pids) == 2
    return [Line("ok" if ok else "FAIL", "two-worker sweep",
                 f"{done}/4 trials complete in {wall:.0f} s; {placed}")]


CHECKS: list[Callable[[bool], list[Line]]] = [
    check_environment, check_dtypes_and_equivalence, check_on_device_batches, check_runs,
    check_syncs, check_same_seed, check_memory, check_step_time, check_sweep,
]


def run_checks(quick: bool = False, echo: Callable[[str], None] = print) -> list[Line]:
    lines: list[Line] = []
    for check in CHECKS:
        try:
            found = check(quick)
        except Exception as exc:  # one broken check must not hide the others
            found = [Line("FAIL", check.__name__.removeprefix("check_"),
                          f"{type(exc).__name__}: {exc}"[:300])]
        for line in found:
            echo(str(line))
        lines += found
    return lines


def write_report(path: Path, argv: list[str], lines: list[Line], wall: float) -> None:
    from bench import tracking

    head = [
        "# GPU check",
        "",
        f"Command: `python -m bench.gpu_check {' '.join(argv)}`".rstrip(),
        "",
        f"Hardware: {tracking.hardware()}.",
        "",
        f"Wall time: {wall:.0f} s.",
        "",
    ]
    if not _cuda():
        head += ["No GPU was available for this run: the CUDA-only checks are skipped "
                 "(marked `skip`) and every other check ran on the CPU. Run the same command "
                 "on a GPU machine to replace this file.", ""]
    body = ["```", *(str(line) for line in lines), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + body))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI mode: no sweep, training runs under 32-true only")
    parser.add_argument("--report", type=Path, default=None,
                        help="also write the lines to this Markdown file "
                             "(reports/gpu_check.md)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    lines = run_checks(args.quick, echo=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0
    print(f"{len(lines)} checks in {wall:.0f} s: "
          + ", ".join(f"{sum(ln.status == s for ln in lines)} {s}"
                      for s in ("ok", "FAIL", "note", "skip")))
    if args.report:
        write_report(args.report, argv, lines, wall)
    return 1 if any(line.status == "FAIL" for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
