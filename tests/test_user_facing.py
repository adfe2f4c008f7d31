"""What a user meets at the command line: errors, the MLflow record, the terminal.

The command-line tests run ``python -m bench`` as a user would, in a fresh directory with
a private MLflow store, and read what it printed, what it left on disk and what MLflow
recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench import errors, tracking
from bench.data.base import ConfigError, DataError
from bench.data.download import Source, download
from bench.stores import StoreAddress
from tests.support import ROOT


def bench_cli(*args: str, cwd: Path, env: dict | None = None, module: str = "bench",
              python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != errors.FULL_ERROR_ENV}
    full_env.update({"COLUMNS": "100", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                     "PYTHONPATH": str(ROOT)})
    full_env.update(env or {})
    return subprocess.run([sys.executable, *python_flags, "-m", module, *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300)


def store(tmp_path: Path) -> str:
    return f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"


# ------------------------------------------------------------------------------ errors


def test_bad_value_is_one_message_before_heavy_imports_and_leaves_no_outputs(tmp_path):
    p = bench_cli("model.topology=sideways", store(tmp_path), cwd=tmp_path,
                  python_flags=("-X", "importtime"))
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    said = [line for line in p.stderr.splitlines() if not line.startswith("import time:")]
    assert p.returncode == errors.EXIT_CODE
    assert said[0] == ("error: model.topology: 'sideways' is not allowed; expected one of "
                       "['single', 'stacked', 'bidirectional', 'stacked_bidirectional']")
    assert len(said) == 2 and "--verbose" in said[1]
    assert "Traceback" not in p.stderr and "Error executing job" not in p.stderr
    assert p.stdout == ""
    # refused before torch, Lightning and MLflow were loaded, and nothing was left behind
    assert {"torch", "lightning", "mlflow"}.isdisjoint(imported)
    assert "bench.config" in imported
    assert sorted(x.name for x in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, said", [
    (("-m", "+sweep=default", "hydra.sweeper.n_trails=5"),
     "error: hydra.sweeper.n_trails: unknown key; did you mean 'hydra.sweeper.n_trials'?"),
    (("model.hiden_size=5",),
     "error: model.hiden_size: unknown key; did you mean 'model.hidden_size'?"),
    (("-m", "+sweep=default", "hydra.sweeper.n_trials=0"),
     "error: hydra.sweeper.n_trials: 0 is not allowed; expected an integer >= 1"),
])
def test_misspelled_keys_and_bad_sweep_settings_are_one_line_before_heavy_imports(
        tmp_path, args, said):
    p = bench_cli(*args, store(tmp_path), cwd=tmp_path, python_flags=("-X", "importtime"))
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    lines = [line for line in p.stderr.splitlines() if not line.startswith("import time:")]
    assert p.returncode == errors.EXIT_CODE, p.stderr
    assert lines[0] == said and len(lines) == 2 and "--verbose" in lines[1]
    assert {"torch", "lightning", "mlflow"}.isdisjoint(imported)


@pytest.mark.parametrize("how", ["--verbose", errors.FULL_ERROR_ENV])
def test_traceback_on_request(tmp_path, how):
    args, env = ("model.hidden_size=-5", store(tmp_path)), {}
    if how == "--verbose":
        args += ("--verbose",)
    else:
        env[how] = "1"
    p = bench_cli(*args, cwd=tmp_path, env=env)
    assert p.returncode != 0
    assert "Traceback (most recent call last)" in p.stderr
    assert "ConfigError: model.hidden_size: -5 is not allowed" in p.stderr


def test_hydra_composition_error_is_one_message(tmp_path):
    p = bench_cli("dataset=no_such_dataset", cwd=tmp_path)
    assert p.returncode == errors.EXIT_CODE
    assert p.stderr.startswith("error: In 'config': Could not find 'dataset/no_such_dataset'")
    assert "\tsbux\n" in p.stderr  # Hydra's list of the options
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_unknown_error_keeps_its_traceback(tmp_path):
    # no torch_xla here: Lightning fails in its own code, which is not a known error
    p = bench_cli("dataset=synthetic", "trainer=smoke", "trainer.accelerator=tpu",
                  store(tmp_path), cwd=tmp_path)
    assert p.returncode == errors.EXIT_CODE
    assert "Traceback (most recent call last)" in p.stderr
    assert 'bench/train.py", line' in p.stderr  # from the job down, not from Hydra's frames
    assert "hydra/_internal" not in p.stderr
    assert "--verbose" in p.stderr.splitlines()[-1]


@pytest.mark.slow
def test_missing_data_offline_is_one_message_and_records_nothing(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    p = bench_cli("dataset=sbux", "trainer=smoke", f"data_dir={empty}", store(tmp_path),
                  cwd=tmp_path, env={"BENCH_OFFLINE": "1"})
    assert p.returncode == errors.EXIT_CODE
    lines = p.stderr.strip().splitlines()
    assert lines[0] == (f"error: dataset 'sbux': no usable copy found. Expected 'SBUX.csv' in "
                        f"{empty}/sbux/ (or {empty}/).")
    assert "Traceback" not in p.stderr and len(lines) <= 6
    # refused before an experiment, a run or a run folder was made for it
    assert sorted(x.name for x in tmp_path.iterdir()) == ["data"]


def test_unreachable_host_is_named_in_plain_words(tmp_path):
    with pytest.raises(DataError) as e:
        download("http://bench-data.invalid/SBUX.csv", tmp_path / "SBUX.csv",
                 Source(name="SBUX.csv"))
    assert str(e.value) == ("http://bench-data.invalid/SBUX.csv: download failed: cannot "
                            "resolve the host name (offline?)")


def test_store_that_cannot_be_opened_is_a_storage_error(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    with pytest.raises(errors.StorageError, match=r"^tracking.uri: the MLflow store sqlite:///"
                       r".*afile/mlflow.db failed \(.*File exists.*\); check that the folder"):
        tracking.client_for(StoreAddress.tracking(f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(errors.StorageError) as e:
        tracking.client_for(StoreAddress.tracking("http://user:secret@127.0.0.1:9"))
    # the credentials go by MLflow's variables: the address MLflow is given has no user
    assert str(e.value) == ("MLflow tracking server http://127.0.0.1:9 is unreachable "
                            "(connection refused); start it or set tracking.uri")


def test_known_errors_share_one_family():
    assert issubclass(ConfigError, errors.BenchError) and issubclass(DataError, errors.BenchError)
    assert ConfigError is errors.ConfigError and DataError is errors.DataError
    assert errors.is_known(ConfigError("x")) and not errors.is_known(RuntimeError("x"))
    from bench.task import NonFiniteLoss

    assert errors.is_known(NonFiniteLoss("training loss became NaN"))


def test_every_loss_the_config_allows_has_its_module():
    from bench import task, vocab

    assert tuple(task.LOSS_MODULES) == vocab.LOSSES


# ----------------------------------------------------------------------- MLflow record


def test_run_is_recorded_in_a_training_experiment_with_the_knobs_it_used(make_cfg, mlflow_uri):
    from bench.train import run

    result = run(make_cfg("dataset=synthetic", "model=gru", "model.impl=cell", "seed=5"))
    client = MlflowClient(mlflow_uri)
    rec = client.get_run(result.run_id)
    exp = client.get_experiment(rec.info.experiment_id)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    params = rec.data.params
    # the knobs a user compares ...
    for key in ("dataset.name", "model.cell", "model.impl", "model.hidden_size", "optim.name",
                "optim.lr", "trainer.max_epochs", "seed", "batch_size", "n_params"):
        assert key in params, key
    # ... and not what this run does not use, nor where files and stores are
    for key in ("model.num_layers", "model.head_hidden", "model.forget_bias", "model.embedding_dim",
                "model.embedding.freeze", "model.param_budget", "optim.momentum", "data_dir",
                "tracking.uri", "run_name", "trial", "trainer.enable_progress_bar"):
        assert key not in params, key
    assert "model.recurrent_dropout" in params  # impl=cell uses it
    assert all(v.strip() for v in rec.data.tags.values()), rec.data.tags
    assert "units" not in rec.data.tags  # a classification target has none
    # the hand-written cell's weights are named with their shapes, not shown as Module()
    summary = client.download_artifacts(result.run_id, "model_summary.txt", str(Path.cwd()))
    text = Path(summary).read_text()
    assert "(rnn): Module()" in text  # what the module tree alone would show ...
    assert "layers.0.rnn.weight_hh_l0" in text  # ... and the weights behind it


@pytest.mark.parametrize("overrides, kept, dropped", [
    (["dataset=mnist"], ["dataset.val_size", "dataset.normalize"],
     ["dataset.files.train_images", "dataset.subdir", "dataset.expected.train"]),
    (["dataset=sbux"], ["dataset.target", "dataset.scaling.fit_rows", "dataset.lookback"],
     ["dataset.sources", "dataset.expected_columns", "dataset.expected_rows"]),
    (["dataset=synthetic", "model=lstm", "model.topology=stacked", "model.head=mlp",
      "optim.name=sgd"],
     ["model.num_layers", "model.head_hidden", "model.forget_bias", "optim.momentum"], []),
])
def test_params_are_knobs_not_file_lists(overrides, kept, dropped):
    from omegaconf import OmegaConf

    from bench.config import compose

    resolved = OmegaConf.to_container(compose(overrides), resolve=True)
    params = tracking.run_params(resolved, tokens=False)
    for key in kept:
        assert key in params, key
    for key in dropped:
        assert not any(p == key or p.startswith(key + ".") for p in params), key
    assert not any(w in str(v) for v in params.values() for w in ("md5", "sha256", "http"))
    assert "model.embedding_dim" in tracking.run_params(resolved, tokens=True)


def test_an_experiment_made_without_a_kind_gets_one_and_a_chosen_kind_stays(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    old = client.create_experiment("made-before")
    chosen = client.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG: "finetuning"})
    assert tracking.ensure_experiment(client, "made-before", None) == old
    assert tracking.ensure_experiment(client, "chosen", None) == chosen
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == (
        "custom_model_development")
    assert client.get_experiment(chosen).tags[tracking.EXPERIMENT_KIND_TAG] == "finetuning"


# ---------------------------------------------------------------------------- terminal


@pytest.mark.slow
def test_a_study_prints_no_lightning_start_up_lines_adverts_or_known_warnings(tmp_path):
    smoke = ROOT / "tests" / "study" / "study_smoke.yaml"
    p = bench_cli(str(smoke), "seeds=1", "tuning.n_trials=1", "architectures.cells=[gru]",
                  "datasets.synthetic_series.enabled=false",
                  f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
                  module="bench.study")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    # 5 runs (gru and mlp tuned with one trial each, then gru, mlp and naive retrained), none
    # printing the accelerator list or the logging-interval warning of a small dataset
    assert "GPU available:" not in out and "TPU available:" not in out, out
    assert "log_every_n_steps" not in out and "logging interval" not in out, out
    assert "INFO: " not in out and "Tip" not in out and "LeafSpec" not in out, out


@pytest.mark.slow
def test_terminal_shows_the_bar_the_table_in_units_and_a_one_line_hint(tmp_path):
    fixtures = ROOT / "tests" / "fixtures"
    p = bench_cli("dataset=sbux", "trainer=smoke", "trainer.enable_progress_bar=true",
                  f"data_dir={fixtures}", store(tmp_path), cwd=tmp_path, env={"COLUMNS": "60"})
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "litlogger" not in out and "Tip" not in out
    assert "`Trainer.fit` stopped" not in out and "v_num" not in out
    bar = [line for line in out.replace("\r", "\n").splitlines() if line.startswith("Epoch 1")]
    assert bar and "train/loss=" in bar[-1] and "val/rmse=" in bar[-1]
    # thousands separators and whole shares, not 2632125.0000
    row = next(line for line in p.stdout.splitlines() if "test mae (shares)" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[1].replace(",", "").isdigit() and "," in cells[1], row
    # the hint is one line that can be pasted whatever the terminal's width
    hint = next(line for line in p.stdout.splitlines() if line.startswith("compare runs with:"))
    assert hint.startswith(f"compare runs with: mlflow ui --backend-store-uri sqlite:///"
                           f"{tmp_path / 'mlflow.db'}   then open http://127.0.0.1:5000/#/")
    assert hint.endswith("/runs?workflowType=machine_learning")
    # a run in a Hydra job keeps its best weights in the job's folder, as its tag says
    (ckpt,) = (tmp_path / "outputs").rglob("checkpoints/best-*.ckpt")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("sbux").experiment_id])
    assert run.data.tags["checkpoint"] == str(ckpt)


def test_numbers_in_units_are_read_at_a_glance():
    from bench.console import format_value, summary_rows

    assert format_value(2632125.0, "shares") == "2,632,125"
    assert format_value(2.5712, "degC") == "2.571"
    assert format_value(0.123456) == "0.1235"
    rows = summary_rows("rmse", "degC", {"test/rmse": 0.3, "test/rmse_units": 2.57,
                                         "test/naive_rmse_units": 3.1})
    assert rows == [("test rmse", "0.3000", ""), ("test rmse (degC)", "2.57", "3.1")]


# --------------------------------------------------------------------- committed files


def test_reports_and_docs_name_no_machine_paths():
    """Stores and data are named relative to the project or by variable, never by a folder
    of the machine that produced the report."""
    import re

    machine = re.compile(r"(?<![\w.])/(work|home|root|Users|mnt|scratch)/|sqlite:////(?!abs/path)")
    pending: set[str] = set()
    found = []
    for folder in ("reports", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".md", ".csv", ".txt", ".json", ".yaml", ".sh", ".html"):
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if machine.search(line) and str(path.relative_to(ROOT)) not in pending:
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
