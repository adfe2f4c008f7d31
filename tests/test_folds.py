"""Tuning on folds of the training cases: the folds, the grouped fold trial, its record in
Optuna and MLflow, and the final models trained on all training cases."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

import bench.sweep
from bench import data as bench_data
from bench import fold_train
from bench.config import validate
from bench.data.base import TensorSplit, WindowSplit
from bench.data.folds import fold_count, make_folds, pooled, subset
from bench.errors import ConfigError
from tests.support import compose_cfg

# 100 synthetic cases: 60 train + 20 val pooled into 80 training cases, 20 test cases
TINY = ["dataset=synthetic", "dataset.n_samples=100", "trainer=smoke",
        "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
        "trainer.limit_test_batches=null", "trainer.max_epochs=4",
        "trainer.early_stopping_patience=null", "batch_size=16", "model.hidden_size=8",
        "tracking.experiment=folds"]


def _labels(split) -> np.ndarray:
    return split[torch.arange(len(split))]["y"].numpy()


def _check_partition(folds, n: int) -> None:
    for f in folds:
        assert not set(f.train) & set(f.val)          # disjoint within a fold
    vals = np.concatenate([f.val for f in folds])
    assert len(vals) == len(set(vals))                 # each case validated at most once
    return vals


def test_fold_count_rule_and_errors():
    assert fold_count("auto", 499) == 5 and fold_count("auto", 500) is None
    assert fold_count("auto", 80, auto_k=3, max_cases=100) == 3
    assert fold_count("off", 10) is None and fold_count(False, 10) is None
    assert fold_count(4, 10_000) == 4
    for bad in (1, 0, "sometimes", 2.5):
        with pytest.raises(ConfigError, match="folds.k"):
            fold_count(bad, 10)
    with pytest.raises(ConfigError, match="folds.k: 5 folds need at least 10"):
        make_folds(TensorSplit(torch.zeros(6, 2, 1), torch.zeros(6).long(), torch.zeros(6)),
                   5, task="classification")


def test_config_refuses_bad_fold_settings():
    for key, value, match in (("folds.k", 1, "folds.k: 1"), ("folds.k", "maybe", "folds.k"),
                              ("folds.auto_k", 1, "folds.auto_k"),
                              ("folds.max_cases", 0, "folds.max_cases")):
        with pytest.raises(ConfigError, match=match):
            validate(compose_cfg(["dataset=synthetic", f"{key}={value}"]))
    validate(compose_cfg(["dataset=synthetic", "folds.k=auto"]))


def test_stratified_folds_cover_the_training_cases():
    p = bench_data.build(compose_cfg(["dataset=synthetic"]).dataset)
    everything = pooled(p.train, p.val)
    assert len(everything) == len(p.train) + len(p.val)
    y = _labels(everything)
    assert (y[: len(p.train)] == _labels(p.train)).all()
    assert (y[len(p.train):] == _labels(p.val)).all()
    folds = make_folds(everything, 5, task="classification", seed=0)
    vals = _check_partition(folds, len(everything))
    assert sorted(vals) == list(range(len(everything)))   # every case validated once
    for f in folds:
        assert sorted([*f.train, *f.val]) == list(range(len(everything)))
    # stratified: each class's cases spread over the folds within one case
    for c in np.unique(y):
        per_fold = [int((y[f.val] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert max(len(f.val) for f in folds) - min(len(f.val) for f in folds) <= 1
    # a subset is the rows asked for
    sub = subset(everything, folds[0].val)
    assert (_labels(sub) == y[folds[0].val]).all()


def test_forecasting_folds_keep_time_order():
    p = bench_data.build(compose_cfg(["dataset=synthetic_series"]).dataset)
    everything = pooled(p.train, p.val)
    assert isinstance(everything, WindowSplit)
    assert (everything.anchors.diff() > 0).all()   # still in time order
    folds = make_folds(everything, 4, task="regression")
    vals = _check_partition(folds, len(everything))
    anchors = everything.anchors.numpy()
    for f in folds:   # rolling origin: every training target precedes every validated one
        assert anchors[f.train].max() < anchors[f.val].min()
    blocks = np.array_split(np.arange(len(everything)), 5)
    assert sorted(vals) == sorted(np.concatenate(blocks[1:]))
    assert len(folds[-1].train) + len(folds[-1].val) == len(everything)


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic_series"])
def test_grouped_folds_equal_folds_run_one_by_one(dataset, tmp_path):
    cfg = compose_cfg([*TINY, f"dataset={dataset}", "folds.k=3"] + (
        ["dataset.n_samples=300"] if dataset == "synthetic_series" else []))
    p = bench_data.build(cfg.dataset)
    reported: list[tuple[int, float]] = []
    grouped = fold_train.fit_folds(cfg, p, 3, report=lambda e, v: reported.append((e, v)))
    alone = fold_train.fit_folds(cfg, p, 3, grouped=False)
    metric = cfg.dataset.metric
    for a, b in zip(grouped.results, alone.results, strict=True):
        for key in ("train/loss", f"val/{metric}", "val/loss"):
            assert np.allclose([v for _, v in a.history[key]], [v for _, v in b.history[key]],
                               rtol=1e-4, atol=1e-5), key
    assert grouped.tuned_epochs == alone.tuned_epochs
    # the objective is the mean of the per-fold scores at the chosen epoch
    assert grouped.objective == pytest.approx(float(np.mean(grouped.fold_values)))
    curves = [[v for _, v in r.history[f"val/{metric}"]] for r in grouped.results]
    e = grouped.best_epoch
    assert grouped.fold_values == pytest.approx([c[e] for c in curves])
    assert [v for _, v in reported] == pytest.approx(list(np.mean(curves, axis=0)))
    best = max if cfg.dataset.direction == "maximize" else min
    assert grouped.objective == pytest.approx(best(np.mean(curves, axis=0)))


def test_fold_sweep_records_mean_and_folds_without_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    study = bench.sweep.tune([*TINY, f"tracking.uri={uri}", "folds.k=3"], "recurrent",
                             study_name="f3", storage=storage, n_trials=2, pruner="none",
                             in_process=True)
    client = MlflowClient(uri)
    trials = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    for t in trials:
        values = t.user_attrs["fold_values"]
        assert len(values) == 3 and t.user_attrs["folds"] == 3
        assert t.value == pytest.approx(float(np.mean(values)))
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        m = run.data.metrics
        assert run.data.tags["folds"] == "3"
        assert int(run.data.tags["tuned_epochs"]) == t.user_attrs["tuned_epochs"]
        assert [m[f"fold{i}/val_accuracy"] for i in range(3)] == pytest.approx(values)
        assert m["best/val_accuracy"] == pytest.approx(t.value)
        assert not [k for k in m if k.startswith("test/") or "/test/" in k]
        assert not [k for k in t.user_attrs if k.startswith("test/")]
        # the pruner saw the mean over folds at every epoch
        folds = [client.get_metric_history(run.info.run_id, f"fold{i}/val/accuracy")
                 for i in range(3)]
        means = np.mean([[h.value for h in sorted(f, key=lambda h: h.step)] for f in folds], 0)
        steps = sorted(t.intermediate_values)
        assert [t.intermediate_values[s] for s in steps] == pytest.approx(list(means))


def test_holdout_sweep_trial_never_tests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    study = bench.sweep.tune([*TINY, f"tracking.uri={uri}", "folds.k=auto",
                              "folds.max_cases=50"], "recurrent", study_name="h",
                             storage=storage, n_trials=1, pruner="none", in_process=True)
    (t,) = study.get_trials()
    assert t.state == optuna.trial.TrialState.COMPLETE and "fold_values" not in t.user_attrs
    run = MlflowClient(uri).get_run(t.user_attrs["mlflow_run_id"])
    assert "folds" not in run.data.tags and "val/accuracy" in run.data.metrics
    assert not [k for k in run.data.metrics if k.startswith("test/")]


def test_final_runs_train_on_all_cases_for_the_tuned_epochs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg([*TINY, f"tracking.uri={uri}", "trainer.early_stopping_patience=2"])
    out = fold_train.run_final(cfg, [0, 1], 3, tags={"study": "f"})
    client = MlflowClient(uri)
    p = bench_data.build(cfg.dataset)
    for res in out:
        assert res.status == "FINISHED"
        run = client.get_run(res.run_id)
        m, tags, params = run.data.metrics, run.data.tags, run.data.params
        assert tags["tuned_epochs"] == "3" and tags["train_cases"] == str(
            len(p.train) + len(p.val)) == "80"
        assert m["epochs_trained"] == 3 and params["trainer.max_epochs"] == "3"
        assert "trainer.early_stopping_patience" not in params   # nothing to stop on
        assert "test/accuracy" in m and not [k for k in m if k.startswith("val/")]
        assert len(client.get_metric_history(res.run_id, "train/loss")) == 3
    # the seeds differ, and grouped equals one by one
    alone = fold_train.run_final(cfg, [1], 3)
    assert client.get_run(alone[0].run_id).data.metrics["test/accuracy"] == pytest.approx(
        client.get_run(out[1].run_id).data.metrics["test/accuracy"])


def test_folds_on_a_real_archive_set(real_data_dir):
    cfg = compose_cfg(["dataset=arrowhead", "folds.k=auto"])
    p = bench_data.build(cfg.dataset, real_data_dir)
    n = len(p.train) + len(p.val)
    assert n == 36 and fold_train.count_for(cfg, p) == 5
    folds, everything = fold_train.fold_splits(cfg, p, 5)
    y = _labels(everything)
    vals = _check_partition(folds, n)
    assert sorted(vals) == list(range(n))
    for c in np.unique(y):
        per_fold = [int((y[f.val] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert not math.isnan(float(everything[torch.arange(n)]["x"].sum()))


def test_a_final_cosine_schedule_keeps_the_rates_the_folds_saw():
    """The folds scored epoch 4 of a 10-epoch cosine; the final run stops there, not at the
    end of a cosine squeezed into 4 epochs."""
    from bench.task import make_schedule

    cfg = compose_cfg([*TINY, "trainer.max_epochs=10", "optim.schedule=cosine",
                       "optim.lr=0.01", "optim.min_lr=0.0001"])
    final = fold_train.final_config(cfg, 4)
    assert final.trainer.max_epochs == 4 and final.optim.schedule_epochs == 10

    def rates(optim: dict, epochs: int) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=optim["lr"])
        sched = make_schedule(opt, optim, epochs)
        out = []
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            sched.step()
        return out

    folds = rates(dict(cfg.optim), 10)
    assert rates(dict(final.optim), 4) == pytest.approx(folds[:4])
    assert folds[3] > 0.005   # still high at the tuned epoch: not annealed to min_lr
