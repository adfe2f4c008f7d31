"""``python -m bench.perf``: the harness's speed and memory, measured side by side.

(a) Jena batch gathering: the vectorised ``WindowSplit`` against the textbook's Python
    generator on the same array; (b) one training epoch through the harness (Lightning,
    the LightningModule, MLflow logging) against a bare PyTorch loop over the same model,
    batches and optimizer; (c) the peak resident memory of a whole Jena-shaped run on a
    synthetic 420,551 x 14 series with the real schema; (d) one forward + backward pass of a
    GRU 32 on Jena-shaped batches (B 128, 14 features) at T = 240 and 500: the fused kernel,
    the hand-written cell loop, and that loop as it was, indexing ``xi[:, t]`` inside the
    loop (a full-size gradient per step, a backward quadratic in T); (e) whole short runs on a
panel dataset, ``bench.train.run`` against a bare loop doing the same work: runs per hour,
core utilisation and where a run's time goes (:class:`Timers`), the numbers that size the
panel study. Each comparison
    alternates its contenders within one process and reports medians, because this machine
    is noisy. Results go to ``reports/perf.md``; ``--only cells`` (or ``runs``) runs (d) (or
(e)) alone and replaces only its section of an existing report; (f) ``--only replicas``: one
run per seed as ``bench.train.run``, as a bare loop, and as K seeds trained together as one
grouped model (``bench.replica_train``), in runs per hour per core and memory per replica.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench import tracking
from bench.data.base import DatasetInfo, Prepared, WindowSplit
from bench.data.module import BenchDataModule, IndexBatchSampler
from bench.stores import StoreAddress

JENA_ROWS, JENA_COLS = 420_551, 14
LOOKBACK, STEP, DELAY, BATCH = 1440, 6, 144, 128


def textbook_generator(data, lookback, delay, min_index, max_index, shuffle=False,
                       batch_size=128, step=6):
    """Chollet's generator (Deep Learning with Python, 1st ed., 6.3), verbatim in behaviour."""
    if max_index is None:
        max_index = len(data) - delay - 1
    i = min_index + lookback
    while 1:
        if shuffle:
            rows = np.random.randint(min_index + lookback, max_index, size=batch_size)
        else:
            if i + batch_size >= max_index:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index))
            i += len(rows)
        samples = np.zeros((len(rows), lookback // step, data.shape[-1]))
        targets = np.zeros((len(rows),))
        for j, _row in enumerate(rows):
            indices = range(rows[j] - lookback, rows[j], step)
            samples[j] = data[indices]
            targets[j] = data[rows[j] + delay][1]
        yield samples, targets


def synthetic_series(rows: int = JENA_ROWS, cols: int = JENA_COLS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, cols)).astype(np.float32)


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_gather(batches: int, repeats: int, threads: int | None = None) -> dict:
    """``threads``: torch's intra-op threads around the gather (None: torch's default; the
    split itself gathers on one thread, see ``bench.data.base._gather_threads``)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _bench_gather(batches, repeats) | {"threads": torch.get_num_threads()}
    finally:
        torch.set_num_threads(previous)


def _bench_gather(batches: int, repeats: int) -> dict:
    data = synthetic_series()
    tensor = torch.from_numpy(data)
    anchors = torch.arange(LOOKBACK, 200_000 - DELAY)
    split = WindowSplit(tensor, tensor[:, 1], anchors, LOOKBACK, STEP, DELAY)
    sampler = IndexBatchSampler(len(split), BATCH, shuffle=True, seed=0)

    def ours():
        it = iter(sampler)
        for _ in range(batches):
            b = split[next(it)]
        return b

    def textbook():
        gen = textbook_generator(data, LOOKBACK, DELAY, 0, 200_000, shuffle=True, step=STEP)
        for _ in range(batches):
            b = next(gen)
        return b

    ours(), textbook()  # warm-up: first-touch page faults and the allocator's growth
    t_ours, t_book = [], []
    for _ in range(repeats):  # alternate so drift hits both alike
        t_ours.append(_seconds(ours))
        t_book.append(_seconds(textbook))
    o, t = statistics.median(t_ours), statistics.median(t_book)
    return {"batches": batches, "ours_s": o, "textbook_s": t, "speedup": t / o}


def _epoch_setup():
    data = torch.from_numpy(synthetic_series(rows=60_000))
    anchors = torch.arange(LOOKBACK, 60_000 - DELAY)
    split = WindowSplit(data, data[:, 1], anchors, LOOKBACK, STEP, DELAY)
    info = DatasetInfo(name="jena_shaped", task="regression", metric="mae",
                       direction="minimize", seq_len=LOOKBACK // STEP, n_features=JENA_COLS)
    prepared = Prepared(info, split, split, split)
    return prepared, info


def bench_epoch(batches: int, repeats: int, hidden: int = 32) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import MLFlowLogger
    from omegaconf import OmegaConf

    from bench.models import build_model
    from bench.task import BenchTask
    from bench.train import EpochHistory

    prepared, info = _epoch_setup()
    mcfg = OmegaConf.create(dict(
        cell="gru", impl="fused", topology="single", num_layers=1, hidden_size=hidden,
        dropout=0.0, recurrent_dropout=0.0, reverse=False, head="linear", head_hidden=8,
        init="pytorch", forget_bias=1.0, embedding_dim=8, param_budget=None))
    optim = {"name": "rmsprop", "lr": 1e-3, "weight_decay": 0.0}
    workdir = Path(tempfile.mkdtemp(prefix="bench-perf-"))
    store = StoreAddress.tracking(f"sqlite:///{workdir / 'mlflow.db'}")
    client, exp = tracking.open_experiment(store, "perf")

    def harness() -> float:
        torch.manual_seed(0)
        task = BenchTask(build_model(mcfg, info), info, "mae", optim)
        dm = BenchDataModule(lambda: prepared, batch_size=BATCH, seed=0)
        run_id = tracking.start_run(client, exp, "perf-harness", {})
        history = EpochHistory()
        trainer = pl.Trainer(
            max_epochs=1, limit_train_batches=batches, limit_val_batches=0,
            accelerator="cpu", devices=1, logger=MLFlowLogger("perf", tracking_uri=store.connect(),
                                                              run_id=run_id),
            callbacks=[history], enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=True, log_every_n_steps=50, num_sanity_val_steps=0,
            default_root_dir=str(workdir),
        )
        trainer.fit(task, datamodule=dm)
        return history.epoch_times[0]

    def bare() -> float:
        torch.manual_seed(0)
        task = BenchTask(build_model(mcfg, info), info, "mae", optim)
        model, opt = task.model, task.configure_optimizers()
        loss_fn = torch.nn.L1Loss()
        sampler = IndexBatchSampler(len(prepared.train), BATCH, shuffle=True, seed=0)
        model.train()
        t0 = time.perf_counter()
        for i, idx in enumerate(sampler):
            if i == batches:
                break
            batch = prepared.train[idx]
            opt.zero_grad()
            loss = loss_fn(model(batch["x"]).squeeze(-1), batch["y"])
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    harness()  # warm-up: imports, first-call allocations, the MLflow schema
    bare()
    t_h, t_b = [], []
    for _ in range(repeats):
        t_h.append(harness())
        t_b.append(bare())
    h, b = statistics.median(t_h), statistics.median(t_b)
    return {"batches": batches, "hidden": hidden, "harness_s": h, "bare_s": b, "ratio": h / b,
            "harness_all": t_h, "bare_all": t_b}


def bench_memory(train_batches: int) -> dict:
    """A whole `python -m bench` Jena run (GRU 32) on a synthetic file of the real schema."""
    from bench.data.jena_synthetic import write_csv

    workdir = Path(tempfile.mkdtemp(prefix="bench-perf-mem-"))
    data_dir = workdir / "data"
    write_csv(data_dir / "jena" / "jena_climate_2009_2016.csv", n_rows=JENA_ROWS)
    # run inside workdir with relative paths, so the command the report prints names no
    # folder of this machine
    cmd = [sys.executable, "-m", "bench", "+experiment=jena_gru", "data_dir=data",
           "trainer.max_epochs=1", f"trainer.limit_train_batches={train_batches}",
           "trainer.limit_val_batches=20", "trainer.limit_test_batches=20",
           "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
           "tracking.uri=sqlite:///mlflow.db"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the Jena-shaped run failed:\n{proc.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"rows": JENA_ROWS, "train_batches": train_batches, "peak_rss_mb": peak_kib / 1024,
            "wall_s": wall, "command": " ".join(cmd[3:])}


class IndexedGRU(torch.nn.Module):
    """The cell loop before the fix, kept only as this benchmark's reference: the same GRU
    arithmetic as ``LoopLayer`` with ``xi[:, s]`` read inside the loop."""

    def __init__(self, layer: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.layer, self.hidden_size = layer, hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dict(self.layer.named_parameters(prefix="", recurse=True))
        xi = torch.nn.functional.linear(x, w["rnn.weight_ih_l0"], w["rnn.bias_ih_l0"])
        h = x.new_zeros(x.shape[0], self.hidden_size)
        for s in range(x.shape[1]):
            gh = torch.nn.functional.linear(h, w["rnn.weight_hh_l0"], w["rnn.bias_hh_l0"])
            xr, xz, xn = xi[:, s].chunk(3, -1)
            hr, hz, hn = gh.chunk(3, -1)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + torch.sigmoid(xr + hr) * hn)
            h = (1 - z) * n + z * h
        return h


def bench_cells(lengths: tuple[int, ...], repeats: int, batch: int = BATCH,
                hidden: int = 32) -> list[dict]:
    """Forward + backward of one GRU layer, fused vs cell loop vs the indexed loop."""
    from bench.models.cells import FusedLayer, LoopLayer

    torch.manual_seed(0)
    fused = FusedLayer("gru", JENA_COLS, hidden, False)
    loop = LoopLayer("gru", JENA_COLS, hidden, False)
    loop.load_state_dict(fused.state_dict())
    indexed = IndexedGRU(loop, hidden)
    contenders: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "fused": lambda x: fused(x)[1], "cell": lambda x: loop(x)[1], "indexed": indexed}
    rows = []
    for t in lengths:
        x = torch.randn(batch, t, JENA_COLS)
        torch.testing.assert_close(contenders["cell"](x), indexed(x))  # same function

        def step(fn, x=x):
            fn(x).sum().backward()

        for fn in contenders.values():  # warm-up
            step(fn)
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(repeats):  # alternate so drift hits all alike
            for name, fn in contenders.items():
                times[name].append(_seconds(lambda fn=fn: step(fn)))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"T": t, "batch": batch, "hidden": hidden, **{f"{k}_s": v for k, v in
                                                                  med.items()}})
    return rows


CELLS_BEGIN, CELLS_END = "<!-- cells:begin -->", "<!-- cells:end -->"


def _command_line(args, extra: str = "") -> str:
    """A section's first line: the command that wrote it and how busy the machine was when it
    ended, since every ratio below is only as quiet as that."""
    return (f"Command: `python -m bench.perf {' '.join(args)}`".rstrip() + extra
            + "; load average {:.1f} / {:.1f} / {:.1f} (1/5/15 min) when it ended.".format(
                *os.getloadavg()))


def cells_section(args, rows: list[dict]) -> str:
    lines = [
        CELLS_BEGIN,
        "## (d) The hand-written cell loop against the fused kernel",
        "",
        _command_line(args, f"; {torch.get_num_threads()} torch threads"),
        "",
        "One GRU layer, forward + backward on one batch of Jena-shaped windows, "
        "median seconds; the contenders alternate within one process. `cell` is "
        "`LoopLayer` (the `impl: cell` of `jena_gru_dropout` and `jena_gru_stacked`, "
        "T = 240), which unbinds the time axis once; `indexed` is the same loop reading "
        "`xi[:, t]` inside it, as it did before (checked equal to `cell`).",
        "",
        "| T | batch x hidden | fused | cell | indexed (before) | indexed / cell |",
        "|---|---|---|---|---|---|",
        *(f"| {r['T']} | {r['batch']} x {r['hidden']} | {r['fused_s']:.3f} s | "
          f"{r['cell_s']:.3f} s | {r['indexed_s']:.3f} s | "
          f"{r['indexed_s'] / r['cell_s']:.1f}x |" for r in rows),
        "",
        CELLS_END,
    ]
    return "\n".join(lines)


def merge_section(text: str, section: str, begin: str = CELLS_BEGIN, end: str = CELLS_END) -> str:
    """``text`` with the section between ``begin`` and ``end`` replaced (appended if absent)."""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + section + "\n"


RUNS_BEGIN, RUNS_END = "<!-- runs:begin -->", "<!-- runs:end -->"


class Timers:
    """Wall time per component of a run: wraps the functions named in
    :func:`run_components` with timers that nest, so each component's time excludes the
    components called inside it (the metric writes inside ``fit``, say)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[float] = []  # time spent in components nested in each open one
        self._undo: list = []

    def wrap(self, owner, attr: str, label: str) -> None:
        original = owner.__dict__[attr]

        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                nested = self._stack.pop()
                self.seconds[label] = self.seconds.get(label, 0.0) + spent - nested
                if self._stack:
                    self._stack[-1] += spent

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)


def run_components():
    """(owner, attribute, label) of what a run does, in the order it does it."""
    import lightning.pytorch as pl

    from bench import train

    return [
        (tracking, "open_experiment", "MLflow store and experiment lookup"),
        (train, "_start_run", "MLflow run creation and tags"),
        (train, "_data", "data preparation, params, config.yaml"),
        (train, "_model", "model build, model_summary.txt"),
        (train, "_trainer", "Trainer set-up"),
        (pl.Trainer, "fit", "fit: Lightning loops, training, validation"),
        (train.BestWeights, "on_train_epoch_end", "best weights kept in memory"),
        (train, "_save_best", "best weights saved (Hydra jobs only)"),
        (pl.Trainer, "test", "test of the best weights"),
        (train.RunMetrics, "flush", "MLflow metric writes"),
        (train, "_log_figures", "figures (two PNGs)"),
        (train, "_close", "run closed (wall time, status)"),
    ]


def _short_run_config(dataset: str, hidden: int, epochs: int, prefix: str):
    """The configuration both run benchmarks time: a GRU at a fixed epoch budget (no early
    stopping, so every contender does the same number of epochs) recording to a throwaway
    store, and the dataset prepared once."""
    from bench.config import compose
    from bench.data import build

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    cfg = compose([f"dataset={dataset}", "model=gru", f"model.hidden_size={hidden}",
                   f"trainer.max_epochs={epochs}", "trainer.early_stopping_patience=null",
                   "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
                   f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"])
    return cfg, build(cfg.dataset, cfg.data_dir)


def _loss_fn(cfg, info: DatasetInfo) -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss() if info.task == "classification" else (
        torch.nn.L1Loss() if cfg.dataset.loss == "mae" else torch.nn.MSELoss())


def _bare_run(cfg, prepared: Prepared, epochs: int) -> None:
    """What a run does without the harness: the same splits, model, optimiser and batches,
    validation every epoch and the test split once, in a plain PyTorch loop."""
    from bench.models import build_model

    info = prepared.info
    torch.manual_seed(0)
    model = build_model(cfg.model, info)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    loss_fn = _loss_fn(cfg, info)

    def forward(batch):
        out = model(batch["x"], batch.get("lengths"))
        return out if info.task == "classification" else out.squeeze(-1)

    def evaluate(split) -> None:
        model.eval()
        with torch.no_grad():
            for idx in IndexBatchSampler(len(split), int(cfg.eval_batch_size), False, 0):
                loss_fn(forward(split[idx]), split[idx]["y"])
        model.train()

    for epoch in range(epochs):
        sampler = IndexBatchSampler(len(prepared.train), int(cfg.batch_size), True, 0)
        sampler.set_epoch(epoch)
        for idx in sampler:
            batch = prepared.train[idx]
            opt.zero_grad()
            loss_fn(forward(batch), batch["y"]).backward()
            opt.step()
        evaluate(prepared.val)
    evaluate(prepared.test)


def bench_runs(dataset: str, runs: int, epochs: int, hidden: int = 32) -> dict:
    """Whole short runs on one panel dataset: ``train.run`` (Lightning, MLflow record, figures)
    against a bare PyTorch loop doing the same work (the same splits, model, optimiser and
    batches; validation every epoch; the test split once), alternated in one process.

    The panel study is many short runs, so what matters is runs per hour and whether the
    harness keeps the cores busy; both contenders use one torch thread, as a sweep worker
    on a 2-core machine does.
    """
    from bench.train import run

    cfg, prepared = _short_run_config(dataset, hidden, epochs, "bench-perf-runs-")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)

    timers = Timers()

    def harness() -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        run(cfg)
        return time.perf_counter() - t0, time.process_time() - c0

    def trial() -> tuple[float, float]:
        # a tuning trial: no test split, no figures (tracking.figures=runs)
        c0, t0 = time.process_time(), time.perf_counter()
        run(cfg, test=False)
        return time.perf_counter() - t0, time.process_time() - c0

    def profiled() -> tuple[float, float]:
        with timers:
            for owner, attr, label in run_components():
                timers.wrap(owner, attr, label)
            return harness()

    def bare() -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        _bare_run(cfg, prepared, epochs)
        return time.perf_counter() - t0, time.process_time() - c0

    try:
        harness()  # warm-up: imports, the MLflow schema, first-call allocations
        bare()
        h, b, p, tr = [], [], [], []
        for _ in range(runs):
            h.append(harness())
            b.append(bare())
            tr.append(trial())
            p.append(profiled()[0])  # a fourth contender: the harness under the timers
    finally:
        torch.set_num_threads(previous)
    per_run = {label: timers.seconds.get(label, 0.0) / runs for _, _, label in run_components()}
    per_run["other (run() itself, untimed glue)"] = max(
        sum(p) / runs - sum(per_run.values()), 0.0)
    hw, bw = statistics.median(w for w, _ in h), statistics.median(w for w, _ in b)
    hc, bc = statistics.median(c for _, c in h), statistics.median(c for _, c in b)
    tw, tc = statistics.median(w for w, _ in tr), statistics.median(c for _, c in tr)
    return {"dataset": dataset, "epochs": epochs, "runs": runs, "hidden": hidden,
            "train": len(prepared.train), "harness_s": hw, "bare_s": bw, "ratio": hw / bw,
            "harness_util": hc / hw, "bare_util": bc / bw,
            "trial_s": tw, "trial_util": tc / tw, "trial_ratio": tw / bw,
            "trial_all": [w for w, _ in tr],
            "harness_all": [w for w, _ in h], "bare_all": [w for w, _ in b],
            "profile": per_run, "profiled_s": sum(p) / runs,
            "bare_mean_s": sum(w for w, _ in b) / runs}


def runs_section(args, r: dict) -> str:
    return "\n".join([
        RUNS_BEGIN,
        "## (e) Whole short runs on a panel dataset: runs per hour",
        "",
        _command_line(args),
        "",
        f"Hardware: {tracking.hardware()}.",
        "",
        f"`{r['dataset']}` ({r['train']} training samples), GRU {r['hidden']}, {r['epochs']} "
        "epochs, validation every epoch, the test split once; one torch thread (as a sweep "
        "worker on two cores). The harness is `bench.train.run` in a long-lived process (a "
        "study's or sweep worker's case): Lightning, the MLflow record, the best weights, "
        "two figures. The bare loop trains the same model on the same batches. Medians of "
        f"{r['runs']} alternated runs; utilisation is process CPU time over wall time (1.0 = "
        "one core kept busy).",
        "",
        "| | wall per run | runs per hour (one worker) | core utilisation |",
        "|---|---|---|---|",
        f"| harness | {r['harness_s']:.2f} s | {3600 / r['harness_s']:,.0f} | "
        f"{r['harness_util']:.2f} |",
        f"| bare loop | {r['bare_s']:.2f} s | {3600 / r['bare_s']:,.0f} | {r['bare_util']:.2f} |",
        f"| ratio | {r['ratio']:.2f}x | | |",
        f"| harness as a tuning trial (no test split, no figures) | {r['trial_s']:.2f} s | "
        f"{3600 / r['trial_s']:,.0f} | {r['trial_util']:.2f} |",
        f"| trial against the bare loop (which also tests) | {r['trial_ratio']:.2f}x | | |",
        "",
        f"Goal: within {RUNS_GOAL:.1f}x of the bare loop: "
        f"{'met' if r['ratio'] <= RUNS_GOAL else 'NOT met'} for a tested run, "
        f"{'met' if r['trial_ratio'] <= RUNS_GOAL else 'NOT met'} for a tuning trial.",
        "",
        f"Wall times (s), in run order: harness {', '.join(f'{t:.2f}' for t in r['harness_all'])};"
        f" bare {', '.join(f'{t:.2f}' for t in r['bare_all'])};"
        f" trial {', '.join(f'{t:.2f}' for t in r['trial_all'])}.",
        "",
        *profile_table(r),
        "",
        RUNS_END,
    ])


RUNS_GOAL = 1.3


def profile_table(r: dict) -> list[str]:
    """Where a harness run's time goes, from the timed runs alternated with the others."""
    total = r["profiled_s"]
    rows = [f"| {label} | {sec:.3f} | {sec / total:.0%} |"
            for label, sec in r["profile"].items() if sec > 0 or "Hydra" not in label]
    return [
        "### Where a run's time goes",
        "",
        f"Each round also runs the harness once with timers around the steps of "
        f"`bench.train.run` (`bench.perf.run_components`); a component's time excludes the "
        f"components inside it. Mean of {r['runs']} timed runs, {total:.2f} s each; the bare "
        f"loop's mean, {r['bare_mean_s']:.2f} s, is the training and evaluation itself, so "
        f"what `fit` and `test` take beyond it is Lightning's share.",
        "",
        "| component | seconds per run | share of the run |",
        "|---|---|---|",
        *rows,
        f"| whole run | {total:.3f} | 100% |",
        f"| (bare loop, same training and evaluation) | {r['bare_mean_s']:.3f} | "
        f"{r['bare_mean_s'] / total:.0%} |",
    ]


REPLICAS_BEGIN, REPLICAS_END = "<!-- replicas:begin -->", "<!-- replicas:end -->"


def _step_memory(model, batch, forward_loss) -> int:
    """Bytes one training step holds: the tensors autograd saves for the backward, plus the
    weights, their gradients and Adam's two moments (4 x the parameters)."""
    saved: dict[int, int] = {}  # by storage: the per-step views of one tensor count once

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward_loss(model, batch)
    loss.backward()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return sum(saved.values()) + 4 * params


def bench_replicas(dataset: str, ks: tuple[int, ...], repeats: int, epochs: int,
                   hidden: int = 32) -> dict:
    """Short runs of one study cell, one run per seed, three ways, alternated in one
    process on one torch thread: ``bench.train.run`` (Lightning, MLflow record, figures),
    a bare PyTorch loop (the same splits, model, batches, validation every epoch, the test
    split once), and K seeds as one grouped model (``bench.replica_train.fit_seeds``: the
    same work per replica, best weights written back and tested). Runs per hour per core
    is 3600 over the process CPU seconds per run.
    """
    from bench.models import build_model
    from bench.models.replicas import ReplicaNet
    from bench.replica_train import fit_seeds
    from bench.train import run

    cfg, prepared = _short_run_config(dataset, hidden, epochs, "bench-perf-replicas-")
    info = prepared.info
    loss_fn = _loss_fn(cfg, info)

    def timed(fn, n: int) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    def harness():
        run(cfg)

    def bare():
        _bare_run(cfg, prepared, epochs)

    def grouped(k: int):
        return lambda: fit_seeds(cfg, list(range(k)), prepared)

    contenders = {"harness": (harness, 1), "bare": (bare, 1),
                  **{f"K={k}": (grouped(k), k) for k in ks}}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    try:
        for fn, _ in contenders.values():  # warm-up: imports, the MLflow schema, allocations
            fn()
        for _ in range(repeats):
            for name, (fn, n) in contenders.items():
                times[name].append(timed(fn, n))
        # memory: one training step on one full training batch
        idx = torch.arange(min(int(cfg.batch_size), len(prepared.train)))

        def single_loss(model, batch):
            out = model(batch["x"], batch.get("lengths"))
            return loss_fn(out if info.task == "classification" else out.squeeze(-1),
                           batch["y"])

        memory: dict[str, float] = {"single": _step_memory(build_model(cfg.model, info), prepared.train[idx],
                                         single_loss)}
        for k in ks:
            net = ReplicaNet([build_model(cfg.model, info) for _ in range(k)])
            flat = prepared.train[idx.repeat(k)]
            batch = {key: v.view(k, len(idx), *v.shape[1:]) for key, v in flat.items()}

            def grouped_loss(model, batch, k=k):
                out = model(batch["x"], batch.get("lengths"))
                out = out if info.task == "classification" else out.squeeze(-1)
                return sum(loss_fn(out[r], batch["y"][r]) for r in range(k))

            memory[f"K={k}"] = _step_memory(net, batch, grouped_loss) / k
    finally:
        torch.set_num_threads(previous)
    med = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
           for name, t in times.items()}
    return {"dataset": dataset, "train": len(prepared.train), "seq_len": info.seq_len,
            "batch_size": int(cfg.batch_size), "epochs": epochs, "hidden": hidden,
            "repeats": repeats, "median": med, "memory": memory,
            "all": {name: [w for w, _ in t] for name, t in times.items()}}


def replicas_section(args, rows: list[dict]) -> str:
    lines = [
        REPLICAS_BEGIN,
        "## (f) Seeds as one grouped model: runs per hour per core",
        "",
        _command_line(args),
        "",
        f"Hardware: {tracking.hardware()}; one torch thread for every contender.",
        "",
        "One study cell's runs differ only in seed. Three ways to do one run per seed: "
        "`bench.train.run` (Lightning, the MLflow record, the best checkpoint, two figures), "
        "a bare PyTorch loop on the fused kernel (same splits, model, batches; validation "
        "every epoch, the test split once), and K seeds trained together as one grouped "
        "model (`bench.replica_train.fit_seeds`: batched-matmul cells, per-replica optimiser "
        "state, validation every epoch, best weights written back into each seed's single "
        "model and tested). GRU, no early stopping, Adam; the datasets' own batch sizes. "
        "Per-run figures are medians over alternated repeats (a group's time divided by K); "
        "runs per hour per core is 3600 over the process CPU seconds per run. Memory per "
        "replica: bytes autograd saves in one training step on one full batch, plus weights, "
        "gradients and Adam's moments.",
        "",
        "| dataset | way | wall per run | runs / hour / core | vs `train.run` | vs bare loop |"
        " memory per replica |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        med = r["median"]
        hc, bc = med["harness"][1], med["bare"][1]
        label = (f"`{r['dataset']}` ({r['train']} train, T {r['seq_len']}, "
                 f"B {r['batch_size']}, {r['epochs']} epochs, GRU {r['hidden']})")
        for name, (wall, cpu) in med.items():
            way = {"harness": "`train.run`, one per seed", "bare": "bare loop, one per seed"
                   }.get(name, f"grouped, {name}")
            mem = r["memory"].get("single" if name in ("harness", "bare") else name)
            lines.append(
                f"| {label} | {way} | {wall:.3f} s | {3600 / cpu:,.0f} | {hc / cpu:.2f}x | "
                f"{bc / cpu:.2f}x | {mem / 2**20:.2f} MB |")
            label = ""
    lines += ["", "Wall seconds per run, in repeat order:", ""]
    for r in rows:
        lines.append(f"- `{r['dataset']}`: " + "; ".join(
            f"{name} {', '.join(f'{t:.3f}' for t in ts)}" for name, ts in r["all"].items()))
    lines += ["", REPLICAS_END]
    return "\n".join(lines)


def write_report(path: Path, args, gathers: list[dict], epoch: dict, memory: dict | None,
                 cells: str | None = None) -> str:
    lines = [
        "# Performance",
        "",
        f"Command: `python -m bench.perf {' '.join(args)}`".rstrip(),
        "",
        f"Hardware: {tracking.hardware()}; {torch.get_num_threads()} torch threads.",
        "",
        "Data: synthetic float32 series of the Jena shape (420,551 x 14) from a fixed seed;",
        "windows of lookback 1440, step 6, delay 144, batches of 128 (the reference Jena setup).",
        "Each comparison runs its contenders alternately in one process; the table shows medians.",
        "",
        "| measurement | harness | reference | ratio | goal | met |",
        "|---|---|---|---|---|---|",
        *(f"| (a) gather {g['batches']} shuffled batches, {g['threads']} torch thread(s) | "
          f"{g['ours_s']:.3f} s (WindowSplit) | {g['textbook_s']:.3f} s (textbook generator) | "
          f"{g['speedup']:.1f}x faster | >= 10x | {'yes' if g['speedup'] >= 10 else 'NO'} |"
          for g in gathers),
        f"| (b) one epoch, {epoch['batches']} batches, GRU {epoch['hidden']} | "
        f"{epoch['harness_s']:.2f} s (Lightning + MLflow) | {epoch['bare_s']:.2f} s (bare loop) | "
        f"{epoch['ratio']:.3f}x | <= 1.10x | {'yes' if epoch['ratio'] <= 1.10 else 'NO'} |",
    ]
    if memory:
        ok = memory["peak_rss_mb"] < 2048
        lines.append(
            f"| (c) peak RSS, whole Jena-shaped run ({memory['train_batches']} train batches) | "
            f"{memory['peak_rss_mb']:.0f} MB | | | < 2048 MB | {'yes' if ok else 'NO'} |")
    lines += ["", "Epoch times (s), in run order:", "",
              f"- harness: {', '.join(f'{t:.2f}' for t in epoch['harness_all'])}",
              f"- bare loop: {', '.join(f'{t:.2f}' for t in epoch['bare_all'])}", ""]
    if memory:
        lines += [f"Memory run: `python -m bench {memory['command']}` "
                  f"({memory['wall_s']:.0f} s wall, series built from a synthetic CSV).", ""]
    text = "\n".join(lines)
    if path.exists() and RUNS_BEGIN in path.read_text():  # keep an earlier --only runs section
        old = path.read_text()
        text = merge_section(text, RUNS_BEGIN + old.split(RUNS_BEGIN, 1)[1].split(RUNS_END, 1)[0]
                             + RUNS_END, RUNS_BEGIN, RUNS_END)
    if path.exists() and REPLICAS_BEGIN in path.read_text():  # an earlier --only replicas
        old = path.read_text()
        text = merge_section(text, REPLICAS_BEGIN + old.split(REPLICAS_BEGIN, 1)[1]
                             .split(REPLICAS_END, 1)[0] + REPLICAS_END,
                             REPLICAS_BEGIN, REPLICAS_END)
    if cells is not None:
        text = merge_section(text, cells)
    elif path.exists():  # keep a section measured by an earlier --only cells run
        old = path.read_text()
        if CELLS_BEGIN in old:
            text = merge_section(text, CELLS_BEGIN + old.split(CELLS_BEGIN, 1)[1]
                                 .split(CELLS_END, 1)[0] + CELLS_END)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    parser.add_argument("--gather-batches", type=int, default=200)
    parser.add_argument("--epoch-batches", type=int, default=100)
    parser.add_argument("--memory-batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--cell-lengths", type=int, nargs="+", default=[240, 500])
    parser.add_argument("--runs-dataset", default="japanesevowels")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runs-epochs", type=int, default=20)
    parser.add_argument("--replicas-datasets", nargs="+",
                        default=["japanesevowels", "gunpoint", "sunspots_monthly"])
    parser.add_argument("--replicas-k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--replicas-epochs", type=int, default=10)
    parser.add_argument("--replicas-repeats", type=int, default=2)
    parser.add_argument("--only", choices=["cells", "runs", "replicas"], default=None,
                        help="run one section and merge it into an existing report")
    parser.add_argument("--out", type=Path, default=Path("reports/perf.md"))
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    from rich.console import Console

    console = Console()
    if args.only == "replicas":
        rows = []
        for dataset in args.replicas_datasets:
            console.print(f"(f) replicas on {dataset} ...")
            rows.append(bench_replicas(dataset, tuple(args.replicas_k), args.replicas_repeats,
                                       args.replicas_epochs))
        section = replicas_section(argv, rows)
        old = args.out.read_text() if args.out.exists() else "# Performance\n"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(merge_section(old, section, REPLICAS_BEGIN, REPLICAS_END))
        console.print(section)
        return
    if args.only == "runs":
        r = bench_runs(args.runs_dataset, args.runs, args.runs_epochs)
        section = runs_section(argv, r)
        old = args.out.read_text() if args.out.exists() else "# Performance\n"
        args.out.write_text(merge_section(old, section, RUNS_BEGIN, RUNS_END))
        console.print(section)
        return
    console.print("(d) cell loop vs fused ...")
    rows = bench_cells(tuple(args.cell_lengths), args.repeats)
    console.print(rows)
    cells = cells_section(argv, rows)
    if args.only == "cells":
        old = args.out.read_text() if args.out.exists() else "# Performance\n"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(merge_section(old, cells))
        console.print(cells)
        return
    console.print("(a) batch gather ...")
    gathers = [bench_gather(args.gather_batches, args.repeats)]
    console.print(gathers)
    console.print("(b) one epoch: harness vs bare loop ...")
    epoch = bench_epoch(args.epoch_batches, args.repeats)
    console.print(epoch)
    memory = None
    if not args.skip_memory:
        console.print("(c) peak memory of a Jena-shaped run ...")
        memory = bench_memory(args.memory_batches)
        console.print(memory)
    console.print(write_report(args.out, argv, gathers, epoch, memory, cells))


if __name__ == "__main__":
    main()
