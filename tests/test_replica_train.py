"""Replicas trained together give what independent Lightning runs give, per replica."""

from __future__ import annotations

import itertools
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import OmegaConf

from bench.data.base import DatasetInfo, Prepared, TensorSplit
from bench.data.module import BenchDataModule
from bench.models import build_model
from bench.models.replicas import ReplicaNet
from bench.replica_train import ReplicaData, train_replicas
from bench.task import BenchTask
from bench.train import BestWeights, EpochHistory
from tests.support.replicas import poison_replica

INFO = DatasetInfo(name="t", task="classification", metric="accuracy", direction="maximize",
                   seq_len=9, n_features=3, num_classes=3)
REG = DatasetInfo(name="r", task="regression", metric="mae", direction="minimize",
                  seq_len=9, n_features=3)
SEEDS = (0, 1, 2)


def mcfg(**kw):
    base = dict(cell="gru", impl="fused", topology="single", num_layers=2, hidden_size=5,
                dropout=0.0, recurrent_dropout=0.0, reverse=False, head="linear", head_hidden=4,
                init="pytorch", forget_bias=1.0, embedding_dim=4, param_budget=None,
                hidden_sizes=[8])
    base.update(kw)
    return OmegaConf.create(base)


def split(n, info, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 9, 3, generator=g, dtype=torch.float64)
    if info.task == "classification":
        y = (x[:, :, 0].sum(1) > 0).long() + (x[:, -1, 1] > 1).long()
        naive = torch.zeros(n)
    else:
        y = x[:, :, 0].mean(1) + 0.1 * x[:, -1, 2]
        naive = x[:, -1, 0]
    return TensorSplit(x, y, naive)


def model(cfg, info, seed):
    pl.seed_everything(seed, verbose=False)
    return build_model(cfg, info).double()


def independent(cfg, info, seed, train, val, optim, epochs, patience, clip, tmp_path):
    """What ``bench.train.run`` does for one run, minus the MLflow record."""
    task = BenchTask(model(cfg, info, seed), info, loss_name(info), optim)
    dm = BenchDataModule(lambda: Prepared(info, train, val, val), batch_size=8,
                         eval_batch_size=16, seed=seed)
    history = EpochHistory()
    mode = "max" if info.direction == "maximize" else "min"
    ckpt = BestWeights(monitor=f"val/{info.metric}", mode=mode)
    cbs = [history, ckpt]
    if patience:
        cbs.append(EarlyStopping(f"val/{info.metric}", patience=patience, mode=mode))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=cbs,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, gradient_clip_val=clip,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=dm)
    best_epoch = ckpt.epoch if ckpt.epoch >= 0 else None
    return history.history, float(ckpt.score), ckpt.state, best_epoch


def loss_name(info):
    return "cross_entropy" if info.task == "classification" else "mae"


def run_both(cfg, info, trains, vals, tmp_path, optim=None, epochs=6, patience=None,
             clip=None, poison=None):
    optim = optim or {"name": "adam", "lr": 0.02}
    net = ReplicaNet([model(cfg, info, s) for s in SEEDS])
    if poison is not None:
        with torch.no_grad():
            for p in net.parameters():
                p[poison] = math.nan
    got = train_replicas(
        net, info, [ReplicaData(s, t, v) for s, t, v in zip(SEEDS, trains, vals, strict=True)],
        loss=loss_name(info), optim=optim, batch_size=8, eval_batch_size=16,
        max_epochs=epochs, patience=patience, gradient_clip_val=clip)
    want = [None if r == poison else
            independent(cfg, info, s, trains[r], vals[r], optim, epochs, patience, clip,
                        tmp_path)
            for r, s in enumerate(SEEDS)]
    return got, want


def assert_same(got, want, metric):
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g.status == "FAILED" and g.epochs_trained == 0
            continue
        history, score, best_state, _ = w
        assert g.status == "FINISHED"
        for key in ("train/loss", f"val/{metric}"):
            ours = [v for _, v in g.history[key]]
            theirs = [v for _, v in history[key]]
            assert len(ours) == len(theirs), key
            torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs),
                                       rtol=1e-7, atol=1e-9)
        assert g.best_score == pytest.approx(score, rel=1e-9)
        theirs = [v for _, v in history[f"val/{metric}"]]
        # BestWeights: the last epoch reaching the best score
        maximize = metric == "accuracy"
        best_val = max(theirs) if maximize else min(theirs)
        assert g.best_epoch == max(i for i, v in enumerate(theirs)
                                   if math.isclose(v, best_val, rel_tol=1e-9))
        for name, p in g.best_state.items():
            torch.testing.assert_close(p, best_state[f"model.{name}"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("cell", "topology"), list(itertools.product(
    ("rnn", "lstm", "gru"), ("single", "stacked", "bidirectional", "stacked_bidirectional"))))
@pytest.mark.slow
def test_seeds_train_like_independent_runs(cell, topology, tmp_path):
    cfg = mcfg(cell=cell, topology=topology)
    train, val = split(37, INFO, 1), split(20, INFO, 2)
    got, want = run_both(cfg, INFO, [train] * 3, [val] * 3, tmp_path, epochs=4)
    assert_same(got, want, "accuracy")


def test_folds_of_different_sizes_early_stopping_and_clipping(tmp_path):
    """Different row subsets, so different numbers of steps per epoch and Adam step
    counts; a per-replica gradient clip; early stopping at different epochs."""
    cfg = mcfg(cell="lstm")
    full = split(60, REG, 3)
    rows = [torch.arange(0, 41), torch.arange(10, 60), torch.arange(5, 30)]
    vals = [split(n, REG, 4 + n) for n in (12, 20, 17)]
    trains = [TensorSplit(full.x[r], full.y[r], full.naive[r]) for r in rows]
    got, want = run_both(cfg, REG, trains, vals, tmp_path, epochs=12, patience=2, clip=0.05,
                         optim={"name": "adam", "lr": 0.05})
    assert_same(got, want, "mae")
    # the replicas stop at different epochs, each where its own run stops
    assert len({g.epochs_trained for g in got}) > 1
    assert [g.epochs_trained for g in got] == [len(w[0]["train/loss"]) for w in want]


@pytest.mark.parametrize("optim", [{"name": "rmsprop", "lr": 0.01, "weight_decay": 1e-3},
                                   {"name": "sgd", "lr": 0.1, "momentum": 0.9}])
def test_other_optimizers_and_the_mlp(optim, tmp_path):
    train, val = split(37, INFO, 1), split(20, INFO, 2)
    got, want = run_both(mcfg(cell="mlp"), INFO, [train] * 3, [val] * 3, tmp_path,
                         optim=optim, epochs=4)
    assert_same(got, want, "accuracy")


@pytest.mark.parametrize("optim", [
    {"name": "adam", "lr": 0.05, "schedule": "cosine", "min_lr": 1e-3},
    {"name": "adam", "lr": 0.05, "schedule": "plateau", "plateau_patience": 1,
     "plateau_factor": 0.5, "min_lr": 1e-4, "weight_decay": 1e-3},
])
def test_schedules_weight_decay_and_a_pooled_summary_per_replica(optim, tmp_path):
    """Each replica's learning rate follows the schedule its own run would step (the plateau
    on its own training loss), with replicas on folds of different sizes and clipped."""
    cfg = mcfg(cell="gru", summary="mean")
    full = split(60, INFO, 3)
    rows = [torch.arange(0, 41), torch.arange(10, 60), torch.arange(5, 30)]
    trains = [TensorSplit(full.x[r], full.y[r], full.naive[r]) for r in rows]
    vals = [split(n, INFO, 4 + n) for n in (12, 20, 17)]
    got, want = run_both(cfg, INFO, trains, vals, tmp_path, optim=optim, epochs=8, clip=0.5)
    assert_same(got, want, "accuracy")


def test_a_nan_fails_its_own_replica_only(tmp_path):
    train, val = split(37, INFO, 1), split(20, INFO, 2)
    got, want = run_both(mcfg(cell="gru"), INFO, [train] * 3, [val] * 3, tmp_path, epochs=3,
                         poison=1)
    assert_same(got, want, "accuracy")
    assert "NaN" in got[1].error


def test_best_weights_go_back_into_a_single_model(tmp_path):
    cfg = mcfg(cell="gru", topology="stacked")
    train, val = split(37, INFO, 1), split(20, INFO, 2)
    net = ReplicaNet([model(cfg, INFO, s) for s in SEEDS])
    got = train_replicas(net, INFO, [ReplicaData(s, train, val) for s in SEEDS],
                         loss="cross_entropy", optim={"name": "adam", "lr": 0.02},
                         batch_size=8, max_epochs=3)
    single = net.write_replica(2, model(cfg, INFO, 99), got[2].best_state)
    acc = (single(val.x).argmax(-1) == val.y).double().mean()
    assert float(acc) == pytest.approx(got[2].best_score)


@pytest.mark.parametrize("overrides", [
    ("dataset=synthetic", "model=gru", "model.hidden_size=8"),
    ("dataset=synthetic_series", "model=lstm", "model.topology=stacked", "model.hidden_size=6",
     "trainer.max_epochs=6", "trainer.early_stopping_patience=1",
     "trainer.gradient_clip_val=0.1"),
])
@pytest.mark.slow
def test_fit_seeds_matches_train_run_per_seed(make_cfg, overrides):
    """Each replica's record is the one ``bench.train.run`` gives its seed alone."""
    from mlflow.tracking import MlflowClient

    from bench.replica_train import fit_seeds
    from bench.train import run

    cfg = make_cfg(*overrides)
    got, _ = fit_seeds(cfg, list(SEEDS))
    client = MlflowClient(cfg.tracking.uri)
    metric = cfg.dataset.metric
    for r, seed in enumerate(SEEDS):
        cfg.seed = seed
        alone = run(cfg)
        curve = [m.value for m in client.get_metric_history(alone.run_id, "train/loss")]
        ours = [v for _, v in got[r].history["train/loss"]]
        torch.testing.assert_close(torch.tensor(ours), torch.tensor(curve), rtol=2e-4,
                                   atol=1e-6)
        assert got[r].epochs_trained == alone.epochs_trained
        assert got[r].best_score == pytest.approx(alone.objective, rel=1e-4, abs=1e-6)
        assert got[r].test_metrics[f"test/{metric}"] == pytest.approx(
            alone.test_metrics[f"test/{metric}"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("overrides", [
    ("dataset=synthetic", "model=gru", "model.hidden_size=8"),
    ("dataset=synthetic_series", "model=lstm", "model.hidden_size=6"),
])
def test_run_seeds_records_what_train_run_records(make_cfg, mlflow_uri, overrides):
    """Per seed, the same params, tags (plus ``replicas``), metric keys and test values as
    ``bench.train.run``'s run; the forecasting dataset has units and naive forecasts."""
    from mlflow.tracking import MlflowClient

    from bench.replica_train import run_seeds
    from bench.train import run

    cfg = make_cfg(*overrides)
    results = run_seeds(cfg, [4, 5], tags={"phase": "final"})
    client = MlflowClient(mlflow_uri)
    for seed, res in zip((4, 5), results, strict=True):
        cfg.seed = seed
        alone = run(cfg, tags={"phase": "final"})
        ours, theirs = client.get_run(res.run_id), client.get_run(alone.run_id)
        assert ours.info.status == theirs.info.status == res.status == "FINISHED"
        assert set(ours.data.params) == set(theirs.data.params)
        assert set(ours.data.tags) == set(theirs.data.tags) | {"replicas", "replica_group"}
        assert set(ours.data.metrics) == set(theirs.data.metrics)
        assert ours.data.tags["replicas"] == "2" and ours.data.tags["seed"] == str(seed)
        assert ours.data.tags["replica_group"] == client.get_run(
            results[0].run_id).data.tags["replica_group"]
        for key in ("seed", "n_params", "layer_sizes", "optim.lr"):
            assert ours.data.params[key] == theirs.data.params[key]
        for key, value in theirs.data.tags.items():
            if key not in ("mlflow.runName", "mlflow.user", "mlflow.source.name",
                           "mlflow.source.type", "mlflow.log-model.history"):
                assert ours.data.tags[key] == value, key
        for key, value in theirs.data.metrics.items():
            if key.startswith(("test/", "best/", "val/", "fit/")) or key == "epochs_trained":
                assert ours.data.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        for key in ("train/loss", "val/loss", f"val/{cfg.dataset.metric}"):
            a = [m.value for m in sorted(client.get_metric_history(res.run_id, key),
                                         key=lambda m: m.step)]
            b = [m.value for m in sorted(client.get_metric_history(alone.run_id, key),
                                         key=lambda m: m.step)]
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5), key
        assert {a.path for a in client.list_artifacts(res.run_id)} == {
            a.path for a in client.list_artifacts(alone.run_id)} - {"plots"}
        assert res.test_metrics == pytest.approx(alone.test_metrics, rel=1e-4, abs=1e-5)
        assert res.units == alone.units


def test_a_nan_fails_only_its_own_seeds_run(make_cfg, mlflow_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    from bench import replica_train

    poison_replica(monkeypatch)
    cfg = make_cfg("dataset=synthetic", "model=gru", "model.hidden_size=8")
    results = replica_train.run_seeds(cfg, [0, 1, 2])
    client = MlflowClient(mlflow_uri)
    assert [r.status for r in results] == ["FINISHED", "FAILED", "FINISHED"]
    runs = [client.get_run(r.run_id) for r in results]
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED", "FINISHED"]
    assert "NaN" in runs[1].data.tags["error"] and "error" not in runs[0].data.tags
    assert "test/accuracy" not in runs[1].data.metrics
    assert "test/accuracy" in runs[2].data.metrics


@pytest.mark.slow
def test_fit_seeds_matches_train_run_on_unequal_lengths(make_cfg, real_data_dir):
    """JapaneseVowels: end-padded sequences of unequal length, read through ``lengths``."""
    from bench.replica_train import fit_seeds
    from bench.train import run

    cfg = make_cfg("dataset=japanesevowels", "model=lstm", "model.topology=bidirectional",
                   "model.hidden_size=8", f"data_dir={real_data_dir}",
                   "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
                   "trainer.limit_test_batches=null")
    got, _ = fit_seeds(cfg, [0, 1])
    for r, seed in enumerate((0, 1)):
        cfg.seed = seed
        alone = run(cfg)
        assert got[r].best_score == pytest.approx(alone.objective, abs=1e-6)
        assert got[r].test_metrics["test/accuracy"] == pytest.approx(
            alone.test_metrics["test/accuracy"], abs=1e-6)
