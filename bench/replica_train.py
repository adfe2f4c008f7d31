"""K runs of one study cell (seeds, or folds) trained together as one ``ReplicaNet``.

A plain loop, not a LightningModule. Lightning's automatic optimisation is one optimiser
step, one gradient clip and one stop decision for the whole module, and its callbacks
(early stopping, best checkpoint) stop or save the whole trainer; here every one of those
is per replica. Each replica has its own step count (Adam's bias correction depends on
it, and replicas on folds of different sizes take different numbers of steps), its own
gradient-norm clip, its own early stop, best weights and NaN failure, and a replica that
has stopped, failed or run out of batches in an epoch is not updated at all. Expressed as
manual optimisation with masks inside Lightning, all of that would bypass Lightning anyway
and add its per-step hook overhead, which on small data is what grouping removes.

What the loop does reproduce is what ``bench.train.run`` does per run, rule for rule, so
each replica's record is the one an independent run would give (the tests check this with
dropout 0): the same batches (``IndexBatchSampler`` with the replica's seed, reshuffled per
epoch), the same loss, the same optimisers (Adam, Keras-default RMSprop, SGD) and learning-rate
schedules (``bench.task.make_schedule``, one per replica, a plateau read off the replica's own
training loss), Lightning's
clip by global norm, Lightning's ``EarlyStopping`` rule (strict improvement, patience) and
``BestWeights``'s (ties go to the later epoch), the epoch's training loss as the mean over
its samples, validation metrics from the same torchmetrics objects as ``BenchTask``, and a
non-finite training loss failing the replica at the end of its epoch, before validation.

Replicas whose batches are smaller, or who have no batch at a step (a smaller fold, or a
stopped replica), still run through the grouped computation on padding rows whose loss
weight is zero; their parameters and optimiser state are left exactly as they were.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from bench import interrupt
from bench.data.base import DatasetInfo, Prepared, Split, split_targets
from bench.data.module import IndexBatchSampler
from bench.models.replicas import ReplicaNet
from bench.task import LOSS_MODULES, chance_loss, fit_check, make_metrics, make_schedule
from bench.vocab import fit_label

REPLICAS_TAG = "replicas"  # the group size a run was trained in; 1: alone, by bench.train.run
# One id shared by the runs of a group: a re-run must train a replica with the same others
# (its dropout masks depend on them), and a start time cannot tell two groups apart.
GROUP_TAG = "replica_group"


def _derived(values: dict[str, float], info: DatasetInfo) -> dict[str, float]:
    """The metrics ``BenchTask`` derives from the computed ones (``_units``, MASE), by its
    rules, so a replica's record has the keys and values its run alone would log."""
    if info.task != "regression":
        return values
    scale = abs(info.target_scale)
    values.update({f"{k}_units": v * scale for k, v in list(values.items())
                   if k.endswith(("mae", "rmse"))})
    if info.mase_scale:
        values.update({k[: -len("mae")] + "mase": v / info.mase_scale
                       for k, v in list(values.items()) if k.endswith("mae")})
    return values


def _naive_preds(batch: dict, info: DatasetInfo) -> torch.Tensor:
    return batch["naive"].long() if info.task == "classification" else batch["naive"]


@torch.no_grad()
def _naive_scores(info: DatasetInfo, split: Split, batches: list[torch.Tensor],
                  prefix: str) -> dict[str, float]:
    """The naive baseline on the batches a replica is scored on; it does not train, so one
    computation stands for every epoch."""
    coll = make_metrics(info)
    for idx in batches:
        batch = split[idx]
        coll.update(_naive_preds(batch, info).cpu(), batch["y"].cpu())
    values = {f"naive_{k}": float(v) for k, v in coll.compute().items()}
    return {f"{prefix}{k}": v for k, v in _derived(values, info).items()}


@dataclass
class ReplicaResult:
    """One replica's outcome, as ``bench.train.run`` would have recorded it alone."""

    seed: int
    status: str = "FINISHED"  # or FAILED (non-finite training loss)
    error: str | None = None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float = math.nan
    epochs_trained: int = 0
    # the best epoch's weights under the single model's parameter names
    best_state: dict[str, torch.Tensor] | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ReplicaData:
    """One replica's rows: its seed draws its batch order; folds give each their own splits.

    ``val`` None: a replica trained for a set number of epochs on all its rows (the final
    model after fold tuning), which keeps its last epoch's weights."""

    seed: int
    train: Split
    val: Split | None


def _elementwise_loss(name: str):
    if name == "cross_entropy":
        return lambda out, y: nn.functional.cross_entropy(
            out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    if name == "mae":
        return lambda out, y: (out - y).abs()
    if name == "mse":
        return lambda out, y: (out - y).square()
    raise ValueError(f"unknown loss {name!r}; expected cross_entropy, mae or mse")


class ReplicaOptimizer:
    """Adam / RMSprop / SGD on stacked parameters, one state and step count per replica.

    The updates are elementwise, as in ``torch.optim``, with the same formulas (L2 weight
    decay added to the gradient, Adam's bias correction from the replica's own step
    count); ``step(mask)`` leaves a replica whose mask is False exactly as it was.
    """

    def __init__(self, params: list[nn.Parameter], k: int, optim: dict):
        self.params = [p for p in params if p.requires_grad]
        self.name = optim["name"]
        self.wd = float(optim.get("weight_decay", 0.0))
        self.momentum = float(optim.get("momentum", 0.0))
        device, dtype = self.params[0].device, self.params[0].dtype
        self.steps = torch.zeros(k, device=device, dtype=dtype)
        # one learning rate per replica: a schedule moves each by its own epochs and losses
        self.lr = torch.full((k,), float(optim["lr"]), device=device, dtype=dtype)
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]

    def keep(self, positions: list[int], params: list[nn.Parameter]) -> None:
        """Keeps the state of the replicas at ``positions``, for the same model's
        parameters after ``ReplicaNet.keep`` (which replaces them)."""
        self.params = [p for p in params if p.requires_grad]
        self.steps = self.steps[positions]
        self.lr = self.lr[positions]
        self.state = [(s1[positions], s2[positions]) for s1, s2 in self.state]

    def set_lr(self, rates: list[float]) -> None:
        self.lr = torch.tensor(rates, device=self.lr.device, dtype=self.lr.dtype)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def clip_(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_`` (what Lightning's ``gradient_clip_val`` does),
        with one total norm per replica."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        sq = grads[0].square().flatten(1).sum(1)
        for g in grads[1:]:
            sq = sq + g.square().flatten(1).sum(1)
        coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    @torch.no_grad()
    def step(self, mask: torch.Tensor) -> None:
        self.steps += mask.to(self.steps.dtype)
        for p, (s1, s2) in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.dim() - 1)))
            live = mask.view(shape)
            lr = self.lr.view(shape)
            g = p.grad if self.wd == 0 else p.grad + self.wd * p
            if self.name == "adam":
                b1, b2, eps = 0.9, 0.999, 1e-8
                m = torch.where(live, s1.lerp(g, 1 - b1), s1)
                v = torch.where(live, s2 * b2 + (1 - b2) * g * g, s2)
                # a replica that has not stepped yet has step 0: its bias correction is
                # never used (masked), clamp keeps it finite
                n = self.steps.clamp(min=1).view(shape)
                bc1, bc2 = 1 - b1 ** n, 1 - b2 ** n
                new = p - (lr / bc1) * m / (v.sqrt() / bc2.sqrt() + eps)
                s1.copy_(m)
                s2.copy_(v)
            elif self.name == "rmsprop":  # Keras's defaults, as BenchTask configures it
                v = torch.where(live, s2 * 0.9 + 0.1 * g * g, s2)
                new = p - lr * g / (v.sqrt() + 1e-7)
                s2.copy_(v)
            elif self.name == "sgd":
                if self.momentum:
                    # a zero buffer makes the first step's ``momentum * 0 + g`` torch's clone
                    buf = torch.where(live, self.momentum * s1 + g, s1)
                    s1.copy_(buf)
                    g = buf
                new = p - lr * g
            else:
                raise ValueError(f"unknown optimizer {self.name!r}")
            p.copy_(torch.where(live, new, p))


def _gather(splits: list[Split], idx: list[torch.Tensor | None]) -> tuple[dict, torch.Tensor]:
    """One grouped batch ``(K, B, ...)`` and its row weights ``(K, B)`` (0 on padding)."""
    b = max(len(i) for i in idx if i is not None)
    rows: list[torch.Tensor] = []
    counts: list[int] = []
    for i in idx:
        if i is None:  # no batch for this replica: padding rows only
            counts.append(0)
            rows.append(torch.zeros(b, dtype=torch.long))
            continue
        counts.append(len(i))
        rows.append(i if len(i) == b else torch.cat([i, i[:1].expand(b - len(i))]))
    if all(s is splits[0] for s in splits):
        # one split shared by every replica (seeds): one gather for the whole group
        flat = splits[0][torch.cat(rows)]
        batch = {key: v.view(len(rows), b, *v.shape[1:]) for key, v in flat.items()}
    else:
        parts = [s[i] for s, i in zip(splits, rows, strict=True)]
        batch = {key: torch.stack([p[key] for p in parts]) for key in parts[0]}
    weights = (torch.arange(b) < torch.tensor(counts).unsqueeze(1)).to(batch["x"].device)
    return batch, weights


def _limit(n: int, limit: int | float | None) -> int:
    """Lightning's ``limit_*_batches``: an int caps the count, a float keeps a fraction."""
    if limit is None:
        return n
    if isinstance(limit, float):
        return int(n * limit)
    return min(n, int(limit))


def _epoch_batches(samplers: list[IndexBatchSampler], live: list[bool], epoch: int,
                   limit: int | float | None = None) -> list[list[torch.Tensor]]:
    out = []
    for sampler, on in zip(samplers, live, strict=True):
        sampler.set_epoch(epoch)
        out.append(list(sampler)[: _limit(len(sampler), limit)] if on else [])
    return out


def _steps(batches: list[list[torch.Tensor]]):
    for s in range(max((len(b) for b in batches), default=0)):
        yield s, [b[s] if s < len(b) else None for b in batches]


def _step_schedule(schedule, train_loss: float) -> None:
    """One epoch's step of a replica's schedule. A schedule drives a holder optimiser that
    only carries the replica's learning rate (the grouped optimiser does the steps), so
    torch's warning that the holder has not stepped yet is about nothing here."""
    if schedule is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(train_loss)
        else:
            schedule.step()


def train_replicas(
    net: ReplicaNet,
    info: DatasetInfo,
    data: list[ReplicaData],
    *,
    loss: str,
    optim: dict,
    batch_size: int,
    eval_batch_size: int | None = None,
    max_epochs: int,
    patience: int | None = None,
    gradient_clip_val: float | None = None,
    metric: str | None = None,
    direction: str | None = None,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
    on_epoch: Callable[[int, list[ReplicaResult]], None] | None = None,
) -> list[ReplicaResult]:
    """Trains the K replicas of ``net`` together; one result per replica, in order.

    ``net`` shrinks as replicas stop or fail (``ReplicaNet.keep``): each replica's weights
    to keep are its ``best_state``. ``on_epoch(epoch, results)`` runs after every epoch's
    bookkeeping (a sweep's pruner reads the folds' scores there; what it raises ends the
    training).
    """
    k = net.k
    if len(data) != k:
        raise ValueError(f"{k} replicas but {len(data)} data entries")
    metric = metric or info.metric
    maximize = (direction or info.direction) == "maximize"
    device = next(net.parameters()).device
    eval_bs = eval_batch_size or batch_size
    lossf = _elementwise_loss(loss)
    opt = ReplicaOptimizer(list(net.parameters()), k, optim)
    # each replica's schedule: the scheduler BenchTask would build, on a stand-in optimiser
    # whose learning rate the replica reads every epoch
    holders = [torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=float(optim["lr"]))
               for _ in range(k)]
    schedules = [make_schedule(h, optim, max_epochs) for h in holders]
    train_samplers = [IndexBatchSampler(len(d.train), batch_size, True, d.seed, "cpu")
                      for d in data]
    val_batches = [[] if d.val is None else b[: _limit(len(b), limit_val_batches)] for d, b in (
        (d, [] if d.val is None else list(IndexBatchSampler(len(d.val), eval_bs, False, d.seed,
                                                               "cpu"))) for d in data)]
    metrics = [make_metrics(info).to(device) for _ in range(k)]
    naive = [{} if d.val is None else _naive_scores(info, d.val, b, "val/")
             for d, b in zip(data, val_batches, strict=True)]
    validated = [d.val is not None for d in data]
    results = [ReplicaResult(seed=d.seed) for d in data]
    live = [True] * k
    best = [-math.inf if maximize else math.inf] * k  # BestWeights's best
    stop_best = list(best)  # EarlyStopping's best
    wait = [0] * k
    train_splits = [d.train for d in data]
    val_splits = [d.val for d in data]

    def forward(batch):
        out = net(batch["x"], batch.get("lengths"))
        return out.squeeze(-1) if info.task == "regression" else out

    group = list(range(k))  # the replica behind each position of the grouped model
    for epoch in range(max_epochs):
        if not any(live):
            break
        if not all(live[r] for r in group):
            # stopped and failed replicas leave the group: no compute is spent on them
            keep = [g for g, r in enumerate(group) if live[r]]
            net.keep(keep)
            opt.keep(keep, list(net.parameters()))
            group = [group[g] for g in keep]
        size = len(group)
        if schedules[0] is not None:
            opt.set_lr([holders[r].param_groups[0]["lr"] for r in group])
        t0 = time.perf_counter()
        net.train()
        loss_sum = torch.zeros(size, device=device, dtype=torch.float64)
        rows = torch.zeros(size, device=device, dtype=torch.float64)
        nonfinite = torch.zeros(size, device=device, dtype=torch.bool)
        samplers = [train_samplers[r] for r in group]
        splits = [train_splits[r] for r in group]
        for _, idx in _steps(_epoch_batches(samplers, [True] * size, epoch,
                                            limit_train_batches)):
            interrupt.check()  # a deferred Ctrl-C or SIGTERM stops at a batch boundary
            batch, w = _gather(splits, idx)
            per_row = lossf(forward(batch), batch["y"])
            n = w.to(per_row.dtype).sum(1)
            per_replica = (per_row * w.to(per_row.dtype)).sum(1) / n.clamp(min=1)
            opt.zero_grad()
            per_replica.sum().backward()
            stepping = n > 0
            if gradient_clip_val:
                opt.clip_(float(gradient_clip_val))
            opt.step(stepping)
            lr = per_replica.detach()
            nonfinite |= stepping & ~torch.isfinite(lr)
            loss_sum += torch.where(stepping, lr.double() * n.double(), 0.0)
            rows += n.double()
        bad = nonfinite.tolist()
        mean_loss = (loss_sum / rows.clamp(min=1)).tolist()
        for g, r in enumerate(group):
            if bad[g]:
                live[r] = False
                results[r].status = "FAILED"
                results[r].error = f"training loss became NaN or infinite at epoch {epoch}"
                continue
            results[r].history.setdefault("train/loss", []).append((epoch, mean_loss[g]))
            _step_schedule(schedules[r], mean_loss[g])
        scores = _validate(net, forward, lossf, [val_splits[r] for r in group],
                           [val_batches[r] for r in group],
                           [live[r] and validated[r] for r in group],
                           [metrics[r] for r in group], metric, [results[r] for r in group],
                           epoch, info, [naive[r] for r in group])
        # the group's epoch, shared equally: what one run's epoch costs inside the group
        seconds = (time.perf_counter() - t0) / size
        for g, r in enumerate(group):
            if not live[r]:
                continue
            res = results[r]
            res.epochs_trained += 1
            res.history.setdefault("time/epoch_s", []).append((epoch, seconds))
            res.history.setdefault("epoch", []).append((epoch, float(epoch)))
            if not validated[r]:
                if epoch == max_epochs - 1:  # no score to choose by: the last epoch's weights
                    res.best_epoch, res.best_state = epoch, net.replica_state(g)
                continue
            score = scores[g]
            finite = math.isfinite(score)
            if finite and (score >= best[r] if maximize else score <= best[r]):
                best[r], res.best_score, res.best_epoch = score, score, epoch
                res.best_state = net.replica_state(g)
            if patience:
                if not finite:
                    live[r] = False
                elif score > stop_best[r] if maximize else score < stop_best[r]:
                    stop_best[r], wait[r] = score, 0
                else:
                    wait[r] += 1
                    if wait[r] >= patience:
                        live[r] = False
        if on_epoch is not None:
            on_epoch(epoch, results)
    return results


@torch.no_grad()
def _validate(net, forward, lossf, splits, batches, live, metrics, metric, results,
              epoch, info, naive) -> list[float]:
    net.eval()
    k = len(splits)
    loss_sum = [0.0] * k
    rows = [0] * k
    for s in range(max((len(b) for b in batches), default=0)):
        idx = [b[s] if (s < len(b) and live[r]) else None for r, b in enumerate(batches)]
        if all(i is None for i in idx):
            break
        batch, _ = _gather(splits, idx)
        out = forward(batch)
        per_row = lossf(out, batch["y"])
        preds = out.argmax(-1) if out.dim() == 3 else out
        for r, i in enumerate(idx):
            if i is None:
                continue
            n = len(i)
            metrics[r].update(preds[r, :n], batch["y"][r, :n])
            loss_sum[r] += float(per_row[r, :n].sum())
            rows[r] += n
    scores = [math.nan] * k
    for r in range(k):
        if not live[r]:
            continue
        values = _derived({key: float(v) for key, v in metrics[r].compute().items()}, info)
        metrics[r].reset()
        scores[r] = values[metric]
        h = results[r].history
        h.setdefault("val/loss", []).append((epoch, loss_sum[r] / max(rows[r], 1)))
        for key, v in values.items():
            h.setdefault(f"val/{key}", []).append((epoch, v))
        for key, v in naive[r].items():
            h.setdefault(key, []).append((epoch, v))
    return scores


@torch.no_grad()
def evaluate(model: nn.Module, info: DatasetInfo, split: Split, batch_size: int,
             prefix: str = "test/", limit: int | float | None = None,
             loss: str | None = None) -> dict[str, float]:
    """A single model scored on a split as ``BenchTask`` tests it: its metrics, the naive
    baseline's on the same batches, the derived ones (``_units``, MASE) and, given the loss's
    name, the loss as the mean over the split's samples."""
    model.eval()
    coll = make_metrics(info).to(next(model.parameters()).device)
    naive = make_metrics(info).to(next(model.parameters()).device)
    lossf = None if loss is None else LOSS_MODULES[loss](reduction="sum")
    loss_sum, rows = 0.0, 0
    batches = list(IndexBatchSampler(len(split), batch_size, False, 0))
    for idx in batches[: _limit(len(batches), limit)]:
        batch = split[idx]
        out = model(batch["x"], batch.get("lengths"))
        out = out if info.task == "classification" else out.squeeze(-1)
        preds = out.argmax(-1) if info.task == "classification" else out
        coll.update(preds, batch["y"])
        naive.update(_naive_preds(batch, info), batch["y"])
        if lossf is not None:
            loss_sum += float(lossf(out, batch["y"]))
            rows += len(batch["y"])
    values = {k: float(v) for k, v in coll.compute().items()}
    values.update({f"naive_{k}": float(v) for k, v in naive.compute().items()})
    out = {f"{prefix}{k}": v for k, v in _derived(values, info).items()}
    if lossf is not None:
        out[f"{prefix}loss"] = loss_sum / max(rows, 1)
    return out


def unsupported(cfg) -> str | None:
    """Why ``cfg``'s seeds cannot train as replicas (None when they can).

    The grouped model is a ``RecurrentNet`` or ``MLP`` (the naive baseline has nothing to
    train), computed in float32 on the CPU: the loop places no model or batch on an
    accelerator and runs no mixed precision, so such a run keeps ``bench.train.run``.
    """
    from bench.vocab import RECURRENT_CELLS

    cell = str(cfg.model.cell)
    if cell not in (*RECURRENT_CELLS, "mlp"):
        return f"the {cell} model is not one the grouped model computes"
    t = cfg.trainer
    if str(t.get("precision", "32-true")) not in ("32-true", "32"):
        return f"trainer.precision={t.precision} (replicas train in float32)"
    accelerator = str(t.get("accelerator", "auto"))
    if accelerator not in ("cpu", "auto") or (
            accelerator == "auto" and (torch.cuda.is_available()
                                       or torch.backends.mps.is_available())):
        return "replicas train on the CPU, and this run would use an accelerator"
    return None


def fit_seeds(cfg, seeds: list[int], prepared=None) -> tuple[list[ReplicaResult], list]:
    """The final retrains of one study cell, one replica per seed, on one config: trained on
    the training split, the best epoch on the validation split chosen (and early stopping
    read from it), as ``bench.train.run`` does for each seed. Returns the results and the
    single models, so a caller can record each replica as a run of its own (no MLflow here).
    """
    from bench import data as bench_data

    prepared = prepared or bench_data.build(cfg.dataset, cfg.data_dir)
    return fit_and_test(cfg, seeds, prepared, prepared.train, prepared.val,
                        cfg.trainer.get("early_stopping_patience"))


def fit_and_test(cfg, seeds: list[int], prepared: Prepared, train: Split, val: Split | None,
                 patience: int | None) -> tuple[list[ReplicaResult], list]:
    """One replica per seed trained on ``train`` and tested on the test split once.

    Each replica's model is built exactly as ``bench.train`` builds its run's (seeded by
    ``pl.seed_everything(seed)``, then ``build_model``), trained by :func:`train_replicas`
    and, where it finished, tested with its kept weights (the best validation epoch's; the
    last epoch's without ``val``) written back into that single model.
    """
    import lightning.pytorch as pl

    from bench.models import build_model

    info = prepared.info
    models = []
    for seed in seeds:
        pl.seed_everything(seed, workers=True, verbose=False)
        models.append(build_model(cfg.model, info, cfg.data_dir))
    net = ReplicaNet(models)
    t = cfg.trainer
    results = train_replicas(
        net, info, [ReplicaData(s, train, val) for s in seeds],
        loss=cfg.dataset.loss, optim=dict(cfg.optim), batch_size=int(cfg.batch_size),
        eval_batch_size=int(cfg.eval_batch_size), max_epochs=int(t.max_epochs),
        patience=patience,
        gradient_clip_val=t.get("gradient_clip_val"),
        metric=cfg.dataset.metric, direction=cfg.dataset.direction,
        limit_train_batches=t.get("limit_train_batches"),
        limit_val_batches=t.get("limit_val_batches"))
    for r, (res, model) in enumerate(zip(results, models, strict=True)):
        if res.status == "FINISHED" and res.best_state is not None:
            net.write_replica(r, model, res.best_state)
            res.test_metrics = evaluate(model, info, prepared.test, int(cfg.eval_batch_size),
                                        limit=t.get("limit_test_batches"),
                                        loss=cfg.dataset.loss)
    return results, models


def run_seeds(cfg, seeds: list[int], *, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None, fit: Callable | None = None) -> list:
    """``bench.train.run`` for several seeds of one config at once: one MLflow run per seed.

    Each run holds what its seed's ``bench.train.run`` would record, key for key: the same
    params, tags (plus ``replicas``, the group's size), per-epoch metrics (the naive
    baseline's and the ``_units`` ones included), final and test metrics, status and error,
    and the ``config.yaml`` and ``model_summary.txt`` artifacts. Per-epoch values are logged
    with the epoch as the step, where Lightning uses the global step; the curves read the
    same in order. Timings are the group's, shared equally among the replicas it trained.
    ``fit`` replaces :func:`fit_seeds` (same arguments and results): the final models of
    fold tuning train on all training cases (``bench.fold_train``).
    The figures (``plots/``) and the best checkpoint are not written: drawing them costs
    more per replica than the training does on the small data grouping is for, and a study
    (the caller) keeps no checkpoint anyway.

    The runs are opened before anything can fail, so a failure of the group leaves each of
    them FAILED (or KILLED) with its error, as a single run would be; a replica whose loss
    goes NaN fails alone. Returns one ``bench.train.RunResult`` per seed, in order.
    """
    import traceback

    from omegaconf import OmegaConf

    from bench import data as bench_data
    from bench import tracking
    from bench.config import plain, validate
    from bench.console import quiet_third_party
    from bench.models import arch_name, n_params
    from bench.stores import mask
    from bench.task import BenchTask
    from bench.train import RunResult, _failure_text, _model_summary

    quiet_third_party()
    validate(cfg)
    store = tracking.store_of(cfg)
    client, exp_id = tracking.open_experiment(
        store, cfg.tracking.experiment, cfg.tracking.artifact_root)
    arch = arch_name(cfg.model)
    metric, direction = cfg.dataset.metric, cfg.dataset.direction
    out: list[RunResult] = []
    resolved: dict[int, dict] = {}
    group = uuid.uuid4().hex if len(seeds) > 1 else None
    for seed in seeds:
        run_tags = {**tracking.standard_tags(cfg, arch), tracking.TAGS["seed"]: seed,
                    tracking.TAGS["hardware"]: tracking.hardware(),
                    tracking.TAGS["command"]: tracking.command_line(),
                    **(tags or {}), REPLICAS_TAG: len(seeds), GROUP_TAG: group}
        name = cfg.get("run_name") or f"{cfg.dataset.name}-{arch}-seed{seed}"
        run_id = tracking.start_run(client, exp_id, name, run_tags, parent_run_id)
        out.append(RunResult(run_id, "RUNNING", math.nan, direction, experiment_id=exp_id,
                             store=store))
        resolved[seed] = {**plain(cfg), "seed": seed}
        tracking.log_params(client, run_id, tracking.run_params(resolved[seed], tokens=False))
        client.log_text(run_id, mask(OmegaConf.to_yaml(resolved[seed])), "config.yaml")
    start = time.perf_counter()
    try:
        prepared = bench_data.build(cfg.dataset, cfg.data_dir)
        info = prepared.info
        for seed, res in zip(seeds, out, strict=True):
            res.units = info.units
            tracking.log_tags(client, res.run_id, {tracking.TAGS["units"]: info.units or None,
                                                   tracking.TAGS["task"]: info.task})
            if info.vocab_size:
                tracking.log_params(client, res.run_id, {
                    k: v for k, v in tracking.run_params(resolved[seed], tokens=True).items()
                    if k.startswith("model.embedding")})
        results, models = (fit or fit_seeds)(cfg, list(seeds), prepared)
        chance = chance_loss(info, cfg.dataset.loss, split_targets(prepared.train))
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
        wall = (time.perf_counter() - start) / max(len(seeds), 1)
        text = "".join(traceback.format_exception(exc))
        for res in out:
            res.status, res.wall_time_s = status, wall
            tracking.log_tags(client, res.run_id, {
                tracking.TAGS["error"]: _failure_text(exc)[:4000]})
            client.log_text(res.run_id, mask(text), "error.txt")
            tracking.log_metrics(client, res.run_id, {"time/wall_s": wall})
            client.set_terminated(res.run_id, status)
        raise
    wall = (time.perf_counter() - start) / max(len(seeds), 1)
    optim = plain(cfg.optim)
    for res, rep, model in zip(out, results, models, strict=True):
        res.status, res.wall_time_s = rep.status, wall
        res.n_params, res.epochs_trained = n_params(model), rep.epochs_trained
        res.objective, res.test_metrics = rep.best_score, dict(rep.test_metrics)
        res.val_metrics = {k: v[-1][1] for k, v in rep.history.items() if k.startswith("val/")}
        tracking.log_params(client, res.run_id, {
            "n_params": res.n_params, "layer_sizes": getattr(model, "layer_sizes", None)})
        client.log_text(res.run_id, _model_summary(
            BenchTask(model, info, cfg.dataset.loss, optim), model), "model_summary.txt")
        for epoch in sorted({e for values in rep.history.values() for e, _ in values}):
            tracking.log_metrics(client, res.run_id, {
                key: v for key, values in rep.history.items() for e, v in values if e == epoch},
                step=epoch)
        final: dict[str, float] = {"time/wall_s": wall}
        if rep.status == "FINISHED":
            final |= {f"best/val_{metric}": rep.best_score, "epochs_trained": rep.epochs_trained,
                      **rep.test_metrics}
            times = [v for _, v in rep.history.get("time/epoch_s", [])]
            if times:
                final["time/mean_epoch_s"] = sum(times) / len(times)
            curve = rep.history.get("train/loss")
            if curve:
                check = fit_check(curve[-1][1], chance)
                final |= check
                tracking.log_tags(client, res.run_id,
                                  {tracking.TAGS["fit"]: fit_label(check["fit/loss_ratio"])})
        tracking.log_metrics(client, res.run_id, final)
        if rep.error:
            error = f"NonFiniteLoss: {rep.error}"
            tracking.log_tags(client, res.run_id, {tracking.TAGS["error"]: error})
            client.log_text(res.run_id, error + "\n", "error.txt")
        client.set_terminated(res.run_id, "FINISHED" if rep.status == "FINISHED" else "FAILED")
    return out
