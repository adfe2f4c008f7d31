"""Runs end to end on tiny configs; the MLflow store is read back to check the record."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from bench.train import NonFiniteLoss, run
from bench.vocab import RECURRENT_CELLS, TOPOLOGIES


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
    paths = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "model_summary.txt", "plots"} <= paths
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    config_text = client.download_artifacts(result.run_id, "config.yaml")
    assert "hidden_size: 8" in Path(config_text).read_text()


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
    cfg = make_cfg("dataset=synthetic_series", "dataset.seq_len=900", "dataset.n_samples=1000")
    with pytest.raises(ValueError, match="does not fit"):
        run(cfg)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("synthetic_series")
    (rec,) = client.search_runs([exp.experiment_id])
    assert rec.info.status == "FAILED"
    assert "does not fit" in rec.data.tags["error"]
    assert rec.data.params["dataset.seq_len"] == "900"
    paths = {a.path for a in client.list_artifacts(rec.info.run_id)}
    assert {"config.yaml", "error.txt"} <= paths


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


def test_test_metrics_come_from_the_best_checkpoint(make_cfg):
    """Re-scores the saved best weights by hand on the test split: the same accuracy."""
    from bench import data
    from bench.models import build_model

    class BestAtTest(Callback):
        """Reads the file the test restores (the run removes its scratch folder after)."""

        def on_test_start(self, trainer, pl_module):
            assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path
            self.state = torch.load(trainer.ckpt_path, weights_only=True)["state_dict"]

    cfg = make_cfg("dataset=synthetic", "model.hidden_size=8", "trainer.max_epochs=4",
                   "trainer.early_stopping_patience=null", "trainer.limit_test_batches=null",
                   "optim.lr=0.05")
    seen = BestAtTest()
    result = run(cfg, callbacks=[seen])
    state = seen.state
    prepared = data.build(cfg.dataset, cfg.data_dir)
    model = build_model(cfg.model, prepared.info)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()
                           if k.startswith("model.")})
    model.eval()
    batch = prepared.test[torch.arange(len(prepared.test))]
    with torch.no_grad():
        acc = (model(batch["x"]).argmax(-1) == batch["y"]).float().mean().item()
    assert result.test_metrics["test/accuracy"] == pytest.approx(acc, abs=1e-6)
