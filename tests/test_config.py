"""The config tree: every experiment composes and validates; bad values fail at start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.config import validate
from bench.data.base import ConfigError
from tests.support import CONF, ROOT, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose_cfg([f"+experiment={name}"])
    validate(cfg)
    assert cfg.dataset.name in name


def test_reference_experiments_exist():
    required = {"mnist_gru", "mnist_lstm", "jena_gru", "jena_gru_dropout", "jena_gru_stacked",
                "jena_gru_bidirectional", "jena_gru_reversed", "jena_mlp", "jena_naive"}
    assert required <= set(EXPERIMENTS)


def test_experiment_values_match_the_references():
    gru = compose_cfg(["+experiment=mnist_gru"])
    assert (gru.model.impl, gru.model.hidden_size, gru.optim.name, gru.optim.lr, gru.batch_size) \
        == ("cell", 128, "sgd", 0.1, 100)
    stacked = compose_cfg(["+experiment=jena_gru_stacked"])
    assert list(stacked.model.hidden_size) == [32, 64]
    assert (stacked.model.dropout, stacked.model.recurrent_dropout) == (0.1, 0.5)
    jena = compose_cfg(["+experiment=jena_gru"])
    assert (jena.trainer.limit_train_batches, jena.batch_size, jena.dataset.loss) == (500, 128, "mae")


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_dataset_composes_with_every_model(dataset, model):
    validate(compose_cfg([f"dataset={dataset}", f"model={model}"]))


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.cell=transformer", "model.cell", "'gru'"),
        ("model.hidden_size=-3", "model.hidden_size", "positive integer"),
        ("model.topology=tree", "model.topology", "'stacked'"),
        ("model.recurrent_dropout=0.2", "model.recurrent_dropout", "model.impl='cell'"),
        ("optim.name=adagrad", "optim.name", "'rmsprop'"),
        ("dataset.metric=f1", "dataset.metric", "'accuracy'"),
        ("model.dropout=1.5", "model.dropout", "[0, 1)"),
        ("model.summary=first", "model.summary", "'mean'"),
        ("optim.schedule=onecycle", "optim.schedule", "'cosine'"),
        ("optim.weight_decay=-0.1", "optim.weight_decay", ">= 0"),
        ("trainer.gradient_clip_val=0", "trainer.gradient_clip_val", "positive number"),
        ("dataset.classes=0", "dataset.classes", "positive integer"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([override]))
    assert key in str(err.value) and allowed in str(err.value)


@pytest.mark.parametrize(("override", "key", "allowed"), [
    (["optim.schedule=plateau", "optim.plateau_factor=2"], "optim.plateau_factor", "(0, 1)"),
    (["optim.schedule=plateau", "optim.plateau_patience=0"], "optim.plateau_patience",
     "positive integer"),
    (["dataset=arrowhead", "dataset.normalize=global"], "dataset.normalize", "'series'"),
])
def test_bad_knob_values_name_the_key(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(override))
    assert key in str(err.value) and allowed in str(err.value)


def _bench(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_help_and_cfg_job(tmp_path):
    helped = _bench("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "dataset:" in helped.stdout
    shown = _bench("+experiment=jena_gru", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "hidden_size: 32" in shown.stdout and "name: rmsprop" in shown.stdout


def test_cli_unknown_dataset_lists_the_options(tmp_path):
    out = _bench("dataset=nope", cwd=tmp_path)
    assert out.returncode != 0
    assert "dataset/nope" in out.stderr and "mnist" in out.stderr


def test_cli_bad_value_fails_before_any_run(tmp_path):
    out = _bench("dataset=synthetic", "model.cell=transformer", "trainer=smoke", cwd=tmp_path)
    assert out.returncode != 0
    assert "model.cell" in out.stderr and "'gru'" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_root_is_the_project():
    assert (ROOT / "pyproject.toml").exists()
