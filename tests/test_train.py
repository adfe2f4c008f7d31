"""Runs end to end on tiny configs; the MLflow store is read back to check the record."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.task import chance_loss
from bench.train import NonFiniteLoss, run
from bench.vocab import RECURRENT_CELLS, TOPOLOGIES, fit_label


def _run_record(uri, run_id):
    client = MlflowClient(uri)
    return client, client.get_run(run_id)


def test_classification_run_is_recorded(make_cfg, mlflow_uri):
    cfg = make_cfg("dataset=synthetic", "model=gru", "model.hidden_size=8", "seed=3")
    result = run(cfg)
    client, rec = _run_record(mlflow_uri, result.run_id)
    assert rec.info.status == "FINISHED" and result.status == "FINISHED"
    exp = client.get_experiment(rec.info.experiment_id)
    assert exp.name == "synthetic"
    assert rec.data.params["model.hidden_size"] == "8"
    assert rec.data.params["optim.name"] == "adam"
    assert int(rec.data.params["n_params"]) == result.n_params > 0
    tags = rec.data.tags
    assert {k: tags[k] for k in ("dataset", "arch", "cell", "topology", "seed")} == {
        "dataset": "synthetic", "arch": "gru-single", "cell": "gru", "topology": "single",
        "seed": "3"}
    assert "git_sha" in tags
    # one value per epoch for the curves; final test metrics; the baseline beside them
    assert len(client.get_metric_history(result.run_id, "val/accuracy")) == 2
    assert len(client.get_metric_history(result.run_id, "train/loss")) == 2
    for key in ("test/accuracy", "test/naive_accuracy", "val/naive_accuracy",
                "best/val_accuracy"):
        assert key in rec.data.metrics, key
    assert rec.data.metrics["best/val_accuracy"] == pytest.approx(result.objective)
    # the fit check: the last epoch's training loss against ln K
    m = rec.data.metrics
    assert m["fit/train_loss"] == pytest.approx(
        client.get_metric_history(result.run_id, "train/loss")[-1].value)
    assert m["fit/chance_loss"] == pytest.approx(math.log(2))
    assert m["fit/loss_ratio"] == pytest.approx(m["fit/train_loss"] / math.log(2))
    assert tags["fit"] == ("fitted" if m["fit/loss_ratio"] < 0.9 else "did not fit")
    assert tags["torch_threads"] == str(torch.get_num_threads())
    paths = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "model_summary.txt", "plots"} <= paths
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    config_text = client.download_artifacts(result.run_id, "config.yaml")
    assert "hidden_size: 8" in Path(config_text).read_text()


@pytest.mark.parametrize("figures", ["runs", "all", "none"])
def test_a_tuning_trial_draws_its_figures_only_when_asked(make_cfg, mlflow_uri, figures):
    """A trial (``test=False``) leaves its curves to MLflow's charts unless
    ``tracking.figures=all``; a tested run draws them unless ``none``."""
    client = MlflowClient(mlflow_uri)
    trial = run(make_cfg("dataset=synthetic", f"tracking.figures={figures}"), test=False)
    tested = run(make_cfg("dataset=synthetic", f"tracking.figures={figures}"))
    drawn = {r.run_id: {a.path for a in client.list_artifacts(r.run_id, "plots")}
             for r in (trial, tested)}
    assert drawn[trial.run_id] == ({"plots/learning_curves.png"} if figures == "all" else set())
    assert bool(drawn[tested.run_id]) == (figures != "none")
    # the metrics behind MLflow's own charts are there either way
    assert len(client.get_metric_history(trial.run_id, "train/loss")) == 2


def test_figures_setting_is_checked(make_cfg):
    with pytest.raises(ConfigError, match=r"tracking.figures: 'some' is not allowed"):
        run(make_cfg("dataset=synthetic", "tracking.figures=some"))


def test_regression_run_reports_units_and_predictions(make_cfg, mlflow_uri):
    result = run(make_cfg("dataset=synthetic_series", "model=lstm", "model.hidden_size=8"))
    client, rec = _run_record(mlflow_uri, result.run_id)
    m = rec.data.metrics
    for key in ("test/mae", "test/rmse", "test/r2", "test/mae_units", "test/naive_mae",
                "test/naive_mae_units"):
        assert key in m, key
    # the synthetic target's scale is its training std (about 0.7 for a noisy sine)
    ratio = m["test/mae_units"] / m["test/mae"]
    assert 0.5 < ratio < 1.0
    assert m["test/naive_mae_units"] / m["test/naive_mae"] == pytest.approx(ratio, rel=1e-4)
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/predictions_vs_actual.png" in plots
    # chance: the training targets' variance in the scaled units the MSE is computed in
    assert m["fit/chance_loss"] > 0 and m["fit/loss_ratio"] == pytest.approx(
        m["fit/train_loss"] / m["fit/chance_loss"])


def test_chance_loss_is_ln_k_or_the_best_constant_predictions_loss():
    info = DatasetInfo("d", "classification", "accuracy", "maximize", 4, 1, num_classes=3)
    y = torch.tensor([0.0, 1.0, 2.0, 10.0])
    assert chance_loss(info, "cross_entropy", y) == pytest.approx(math.log(3))
    reg = DatasetInfo("d", "regression", "mae", "minimize", 4, 1)
    assert chance_loss(reg, "mse", y) == pytest.approx(float(((y - y.mean()) ** 2).mean()))
    assert chance_loss(reg, "mae", y) == pytest.approx((1 + 0 + 1 + 9) / 4)  # median 1
    assert fit_label(0.5) == "fitted" and fit_label(0.9) == "did not fit"
    assert fit_label(math.nan) is None


@pytest.mark.parametrize(("cell", "topology", "impl"),
                         list(itertools.product(RECURRENT_CELLS, TOPOLOGIES, ("fused", "cell"))))
def test_every_cell_topology_impl_trains_through_the_pipeline(make_cfg, cell, topology, impl):
    result = run(make_cfg("dataset=synthetic_series", f"model={cell}",
                          f"model.topology={topology}", f"model.impl={impl}",
                          "model.hidden_size=4", "trainer.max_epochs=1",
                          "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                          "trainer.limit_test_batches=1"))
    assert result.status == "FINISHED" and math.isfinite(result.objective)


@pytest.mark.parametrize("model", ["naive", "mlp"])
@pytest.mark.parametrize("dataset", ["synthetic", "synthetic_series"])
def test_baselines_run_through_the_same_pipeline(make_cfg, mlflow_uri, model, dataset):
    result = run(make_cfg(f"dataset={dataset}", f"model={model}"))
    _, rec = _run_record(mlflow_uri, result.run_id)
    assert rec.info.status == "FINISHED"
    assert rec.data.tags["arch"] == model
    metric = "accuracy" if dataset == "synthetic" else "mae"
    if model == "naive":
        # the naive model *is* the baseline: identical scores on identical batches
        assert rec.data.metrics[f"test/{metric}"] == pytest.approx(
            rec.data.metrics[f"test/naive_{metric}"])
        assert result.n_params == 0 and result.epochs_trained == 0


def test_same_seed_same_numbers(make_cfg):
    a = run(make_cfg("dataset=synthetic_series", "model=gru", "model.hidden_size=8", "seed=7"))
    b = run(make_cfg("dataset=synthetic_series", "model=gru", "model.hidden_size=8", "seed=7"))
    c = run(make_cfg("dataset=synthetic_series", "model=gru", "model.hidden_size=8", "seed=8"))
    assert a.test_metrics == b.test_metrics
    assert a.test_metrics != c.test_metrics


def test_a_failing_run_is_closed_failed_and_keeps_its_record(make_cfg, mlflow_uri):
    with pytest.raises(NonFiniteLoss):
        run(make_cfg("dataset=synthetic", "dataset.nan_inputs=true", "model.hidden_size=8"))
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("synthetic")
    (rec,) = client.search_runs([exp.experiment_id])
    assert rec.info.status == "FAILED"
    assert "NonFiniteLoss" in rec.data.tags["error"]
    assert rec.data.params["model.hidden_size"] == "8"
    paths = {a.path for a in client.list_artifacts(rec.info.run_id)}
    assert {"config.yaml", "error.txt"} <= paths


def test_data_that_cannot_be_used_is_refused_before_anything_is_recorded(make_cfg, mlflow_uri):
    cfg = make_cfg("dataset=synthetic_series", "dataset.seq_len=900", "dataset.n_samples=1000")
    with pytest.raises(ValueError, match="does not fit"):
        run(cfg)
    client = MlflowClient(mlflow_uri)
    assert client.get_experiment_by_name("synthetic_series") is None


def test_nan_loss_fails_the_run(make_cfg, mlflow_uri):
    with pytest.raises(NonFiniteLoss):
        run(make_cfg("dataset=synthetic", "dataset.nan_inputs=true"))
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("synthetic")
    (rec,) = client.search_runs([exp.experiment_id])
    assert rec.info.status == "FAILED" and "NonFiniteLoss" in rec.data.tags["error"]


def test_objective_is_the_best_epoch_and_testing_uses_its_weights(make_cfg, mlflow_uri):
    result = run(make_cfg("dataset=synthetic", "model.hidden_size=8", "trainer.max_epochs=4",
                          "trainer.early_stopping_patience=null", "optim.lr=0.05"))
    client = MlflowClient(mlflow_uri)
    history = [m.value for m in client.get_metric_history(result.run_id, "val/accuracy")]
    assert len(history) == 4
    assert result.objective == pytest.approx(max(history))
    # the curves in the figure and in RunResult are the same epochs as MLflow's, not lagged
    assert result.val_metrics["val/accuracy"] == pytest.approx(history[-1])
    assert result.epochs_trained == 4
    assert torch.isfinite(torch.tensor(result.test_metrics["test/accuracy"]))


class EpochWeights(Callback):
    """Each epoch's validation accuracy and weights, and the weights the test starts from."""

    def __init__(self):
        self.epochs: list[tuple[float, dict]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append((float(trainer.callback_metrics["val/accuracy"]),
                            {k: v.clone() for k, v in pl_module.state_dict().items()}))

    def on_test_start(self, trainer, pl_module):
        self.tested = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_test_metrics_come_from_the_best_epochs_weights(make_cfg):
    """The test starts from the weights of the best validation epoch (a tie goes to the later
    one), and re-scoring those weights by hand on the test split gives the same accuracy."""
    from bench import data
    from bench.models import build_model

    cfg = make_cfg("dataset=synthetic", "model.hidden_size=8", "trainer.max_epochs=4",
                   "trainer.early_stopping_patience=null", "trainer.limit_test_batches=null",
                   "optim.lr=0.05")
    seen = EpochWeights()
    result = run(cfg, callbacks=[seen])
    scores = [score for score, _ in seen.epochs]
    best = max(i for i, score in enumerate(scores) if score == max(scores))
    assert result.objective == pytest.approx(max(scores))
    state = seen.epochs[best][1]
    assert state.keys() == seen.tested.keys()
    assert all(torch.equal(state[k], seen.tested[k]) for k in state)
    if best != len(scores) - 1:  # the final weights were not the ones tested
        last = seen.epochs[-1][1]
        assert not all(torch.equal(last[k], seen.tested[k]) for k in last)
    prepared = data.build(cfg.dataset, cfg.data_dir)
    model = build_model(cfg.model, prepared.info)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()
                           if k.startswith("model.")})
    model.eval()
    batch = prepared.test[torch.arange(len(prepared.test))]
    with torch.no_grad():
        acc = (model(batch["x"]).argmax(-1) == batch["y"]).float().mean().item()
    assert result.test_metrics["test/accuracy"] == pytest.approx(acc, abs=1e-6)


def test_a_tie_keeps_the_later_epoch():
    """On a plateau of the validation metric the later (more trained) epoch's weights stay."""
    from types import SimpleNamespace

    from bench.train import BestWeights

    class Strategy:
        @staticmethod
        def reduce_boolean_decision(decision):
            return decision

    best = BestWeights("val/accuracy", "max")
    module = torch.nn.Linear(1, 1)
    for epoch, score in enumerate([0.5, 1.0, 1.0, 0.9, float("nan")]):
        with torch.no_grad():
            module.weight.fill_(epoch)
        trainer = SimpleNamespace(
            sanity_checking=False, state=SimpleNamespace(fn="fit"), global_step=10 * (epoch + 1),
            current_epoch=epoch, callback_metrics={"val/accuracy": torch.tensor(score)},
            strategy=Strategy())
        best.on_train_epoch_end(trainer, module)
    assert best.epoch == 2 and float(best.score) == 1.0
    assert best.state["weight"].item() == 2.0
    assert best.checkpoint()["global_step"] == 30


class FailsAtEpoch(Callback):
    def __init__(self, epoch: int, uri: str | None = None):
        self.epoch, self.uri, self.seen = epoch, uri, []

    def on_train_epoch_end(self, trainer, pl_module):
        if self.uri is not None:  # what the store holds while the run trains
            run_id = trainer.logger.run_id
            self.seen.append(len(MlflowClient(self.uri).get_metric_history(run_id,
                                                                           "val/accuracy")))
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("stopped on purpose")


def test_every_epoch_metric_reaches_mlflow_with_its_step(make_cfg, mlflow_uri):
    result = run(make_cfg("dataset=synthetic", "model.hidden_size=8", "trainer.max_epochs=3",
                          "trainer.early_stopping_patience=null"))
    client = MlflowClient(mlflow_uri)
    steps = {key: [m.step for m in client.get_metric_history(result.run_id, key)]
             for key in ("train/loss", "val/loss", "val/accuracy", "val/naive_accuracy",
                         "time/epoch_s")}
    # the smoke trainer runs 3 batches an epoch: each epoch's values carry the step of its
    # last batch, as Lightning numbers them (from 0)
    assert all(s == [2, 5, 8] for s in steps.values()), steps
    rec = client.get_run(result.run_id).data.metrics
    for key in ("time/wall_s", "time/mean_epoch_s", "epochs_trained", "test/accuracy"):
        assert key in rec, key


def test_a_failed_run_keeps_the_metrics_of_its_epochs(make_cfg, mlflow_uri):
    with pytest.raises(RuntimeError, match="on purpose"):
        run(make_cfg("dataset=synthetic", "trainer.max_epochs=5",
                     "trainer.early_stopping_patience=null"), callbacks=[FailsAtEpoch(1)])
    client = MlflowClient(mlflow_uri)
    (rec,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert rec.info.status == "FAILED"
    assert len(client.get_metric_history(rec.info.run_id, "val/accuracy")) == 2
    assert "time/wall_s" in rec.data.metrics


@pytest.mark.parametrize("flush_every_s", [0.0, None])
def test_metrics_are_written_during_a_run_once_the_last_write_is_old_enough(
        make_cfg, mlflow_uri, flush_every_s):
    """With writes due at once (``tracking.flush_s=0``, or a long run's epochs), the curves
    grow in the store epoch by epoch; a short run's metrics wait for its end."""
    watch = FailsAtEpoch(99, mlflow_uri)
    flush = [] if flush_every_s is None else [f"tracking.flush_s={flush_every_s}"]
    result = run(make_cfg("dataset=synthetic", "trainer.max_epochs=3",
                          "trainer.early_stopping_patience=null", *flush), callbacks=[watch])
    # the watch reads the store at each epoch's end, after that epoch's validation values
    # were logged
    assert watch.seen == ([1, 2, 3] if flush_every_s == 0.0 else [0, 0, 0])
    history = MlflowClient(mlflow_uri).get_metric_history(result.run_id, "val/accuracy")
    assert len(history) == 3
