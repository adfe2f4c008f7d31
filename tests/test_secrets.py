"""Passwords in store URLs: never in a run folder, a printed line or the MLflow record, and
every documented way of giving one still connects.

The `server` tests use the PostgreSQL and MLflow server of ``.ci/services.sh``; the tracking
server is reached through a small proxy that demands HTTP basic auth, so a run that lost its
password on the way fails instead of passing unnoticed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import optuna
import pytest
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from bench import errors, stores
from bench.stores import StoreAddress
from bench.sweep import storage as storage_mod
from tests.support import ROOT, MlflowProxy

# Variables a password may travel by; a test starts from none of them set.
_PASSWORD_VARS = (stores.STORAGE_ENV, stores.TRACKING_ENV, stores.MLFLOW_USER_ENV,
                  stores.MLFLOW_PASSWORD_ENV, "PGPASSWORD")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _PASSWORD_VARS and k != errors.FULL_ERROR_ENV}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "200", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    env.update(extra)
    return env


def _bench(*args: str, cwd: Path, module: str = "bench", **env: str):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=_clean_env(**env),
                          capture_output=True, text=True, timeout=600)


def _pg() -> tuple[str, str]:
    """The test PostgreSQL's URL and its password, or skip with the reason."""
    url = os.environ.get("BENCH_TEST_PG_URL")
    if not url:
        pytest.skip("server test: BENCH_TEST_PG_URL unset; run `. .ci/services.sh` first")
    return url, url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def _without_password(url: str) -> str:
    return re.sub(r"^(\w+://[^:/@]+):[^@]*@", r"\1@", url)


def _assert_nowhere(secret: str, folder: Path, *texts: str) -> None:
    """Not in any file under ``folder`` (run folders, stores, artifacts), nor in ``texts``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    for text in texts:
        assert secret not in text


def _assert_not_recorded(secret: str, client: MlflowClient, run_id: str, dest: Path) -> None:
    run = client.get_run(run_id)
    assert secret not in repr(run.data.params) + repr(run.data.tags)
    dest.mkdir()
    client.download_artifacts(run_id, "", str(dest))
    names = {p.name for p in dest.rglob("*") if p.is_file()}
    assert "config.yaml" in names
    _assert_nowhere(secret, dest)


def _run_id(stdout: str) -> str:
    return re.search(r"^MLflow run (\w+)$", stdout, re.M).group(1)


def _hint(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("compare runs with:"))


# ------------------------------------------------------------------------ no servers


def test_a_password_survives_masking_whatever_its_characters(monkeypatch):
    for name in _PASSWORD_VARS:
        monkeypatch.delenv(name, raising=False)
    secret = "p@ss/w:rd%"
    url = "postgresql+psycopg2://bench:p%40ss%2Fw%3Ard%25@db.example:5432/optuna"
    address = StoreAddress.optuna(url)
    masked = str(address)
    assert masked == "postgresql+psycopg2://bench:***@db.example:5432/optuna"
    assert repr(address) == f"StoreAddress({masked!r}, 'optuna')" and secret not in f"{address}"
    assert os.environ[stores.STORAGE_ENV] == secret
    assert address.connect() == url
    # in another process the masked URL travels, the password comes from the environment
    assert StoreAddress.optuna(masked).connect() == url
    # the documented form: a user in the URL, the password in the environment
    assert StoreAddress.optuna("postgresql+psycopg2://bench@db.example/optuna").connect() == (
        "postgresql+psycopg2://bench:p%40ss%2Fw%3Ard%25@db.example/optuna")
    # what to paste into a shell: the variable, never the password
    arg, note = StoreAddress.optuna(masked).shell_form()
    assert arg == '"postgresql+psycopg2://bench:$BENCH_STORAGE_PASSWORD@db.example:5432/optuna"'
    assert stores.STORAGE_ENV in note
    # without the variable, libpq's PGPASSWORD or ~/.pgpass supplies it
    monkeypatch.delenv(stores.STORAGE_ENV)
    assert StoreAddress.optuna(masked).connect() == (
        "postgresql+psycopg2://bench@db.example:5432/optuna")


def test_a_password_in_another_override_is_refused_before_hydra_saves_it(tmp_path):
    p = _bench("dataset=synthetic", "data_dir=https://u:S3CRET-x@files.example/data", cwd=tmp_path)
    assert p.returncode == errors.EXIT_CODE
    assert p.stderr.startswith("error: data_dir: this value carries a password")
    assert "S3CRET-x" not in p.stdout + p.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder


class _FailsNamingAStore(Callback):
    def __init__(self, secret: str):
        self.secret = secret

    def on_train_epoch_start(self, trainer, pl_module):
        raise RuntimeError(f"cannot reach postgresql://bench:{self.secret}@db.example/optuna")


def test_a_failure_naming_a_password_is_recorded_masked(make_cfg, mlflow_uri, tmp_path):
    from bench.train import run

    secret = "S3CRET-" + uuid.uuid4().hex[:8]
    with pytest.raises(RuntimeError, match="cannot reach"):
        run(make_cfg("dataset=synthetic"), callbacks=[_FailsNamingAStore(secret)])
    client = MlflowClient(mlflow_uri)
    (rec,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert rec.info.status == "FAILED"
    assert "postgresql://bench:***@db.example" in rec.data.tags["error"]
    error_txt = client.download_artifacts(rec.info.run_id, "error.txt", str(tmp_path))
    text = Path(error_txt).read_text()
    assert "Traceback" in text and "postgresql://bench:***@db.example/optuna" in text
    assert secret not in text
    _assert_not_recorded(secret, client, rec.info.run_id, tmp_path / "artifacts")


# --------------------------------------------------------------------------- servers


@pytest.mark.server
@pytest.mark.slow
def test_a_database_tracking_store_password_stays_off_disk_screen_and_record(tmp_path):
    pg_url, secret = _pg()
    # plain postgresql:// (as a user writes it), the password on the command line
    mlflow_db = pg_url.rsplit("/", 1)[0] + "/bench_mlflow"
    experiment = f"secrets-{uuid.uuid4().hex[:8]}"
    p = _bench("dataset=synthetic", "trainer=smoke", f"tracking.uri={mlflow_db}",
               f"tracking.experiment={experiment}",
               f"tracking.artifact_root={(tmp_path / 'mlartifacts').as_uri()}", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    run_dirs = list((tmp_path / "outputs").glob("*/*/.hydra"))
    assert len(run_dirs) == 1
    assert "bench:***@127.0.0.1" in (run_dirs[0] / "overrides.yaml").read_text()
    _assert_nowhere(secret, tmp_path, p.stdout, p.stderr)
    # the hint can be pasted: the shell supplies the password
    assert '--backend-store-uri "postgresql+psycopg2://bench:$BENCH_TRACKING_PASSWORD@' in (
        _hint(p.stdout))
    client = MlflowClient(mlflow_db.replace("postgresql://", "postgresql+psycopg2://"))
    run_id = _run_id(p.stdout)
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_not_recorded(secret, client, run_id, tmp_path / "downloaded")


@pytest.mark.server
@pytest.mark.slow
def test_a_tracking_server_password_is_sent_but_never_shown(tmp_path):
    target = os.environ.get("BENCH_TEST_MLFLOW_URL")
    if not target:
        pytest.skip("server test: BENCH_TEST_MLFLOW_URL unset; run `. .ci/services.sh` first")
    secret = "S3CRET-" + uuid.uuid4().hex[:8]
    proxy = MlflowProxy(target, "alice", secret)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        port = proxy.server_address[1]
        p = _bench("dataset=synthetic", "trainer=smoke",
                   f"tracking.uri=http://alice:{secret}@127.0.0.1:{port}",
                   f"tracking.experiment=secrets-{uuid.uuid4().hex[:8]}", cwd=tmp_path)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert p.returncode == 0, p.stdout + p.stderr
    # every MLflow request carried the password (MLflow's credentials); only the probe that
    # the server is up goes without, and any answer satisfies it
    assert proxy.accepted > 0 and set(proxy.refused) <= {"/health"}
    _assert_nowhere(secret, tmp_path, p.stdout, p.stderr)
    assert _hint(p.stdout).startswith(f"compare runs with: open http://127.0.0.1:{port}/#/")
    client = MlflowClient(target)
    run_id = _run_id(p.stdout)
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_not_recorded(secret, client, run_id, tmp_path / "downloaded")


@pytest.mark.server
@pytest.mark.slow
def test_a_sweep_storage_password_from_the_command_line_is_masked(tmp_path):
    pg_url, secret = _pg()
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    p = _bench("-m", "dataset=synthetic", "trainer=smoke", "+sweep=default",
               "hydra.sweeper.n_trials=1", f"hydra.sweeper.study_name={name}",
               f"hydra.sweeper.storage={pg_url}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
               f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    _assert_nowhere(secret, tmp_path, out)  # multirun/, every job's .hydra/, mlflow.db
    # the dashboard line finds the password in the shell, as the note says
    assert ('optuna-dashboard "postgresql+psycopg2://bench:$BENCH_STORAGE_PASSWORD@127.0.0.1:'
            in out), out
    assert f"(with {stores.STORAGE_ENV} set to the password)" in out
    study = optuna.load_study(study_name=name, storage=StoreAddress.optuna(pg_url).connect())
    assert len(study.get_trials()) == 1


@pytest.mark.server
@pytest.mark.slow
def test_a_storage_url_with_a_user_takes_the_password_from_the_environment(monkeypatch,
                                                                           tmp_path):
    pg_url, secret = _pg()
    for var in _PASSWORD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(stores.STORAGE_ENV, secret)
    documented = _without_password(pg_url)  # postgresql://bench@127.0.0.1:5432/bench_optuna
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage_mod.open_storage(
        StoreAddress.optuna(documented)))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    # the report reads the same storage the same way
    from bench.results.reader import _trials

    assert [t["status"] for t in _trials(documented, name)] == ["COMPLETE"]
    # and the study runner, plain postgresql:// included, from the command line
    p = _bench(str(ROOT / "tests" / "study" / "study_smoke.yaml"), "--dry-run", "--no-record",
               f"tuning.storage={documented}", module="bench.study", cwd=tmp_path,
               **{stores.STORAGE_ENV: secret})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tune synthetic/gru-single: would run 3 trials" in p.stdout
    assert secret not in p.stdout + p.stderr


def test_a_password_written_in_a_config_file_is_refused_before_anything_is_saved(tmp_path):
    """A tracking config of the user's own (``--config-dir``) with the password in its URL:
    one message naming the key and the variable, exit status 1, no run folder, and the
    password in no line printed. The same URL on the command line is accepted (masked)."""
    conf = tmp_path / "myconf" / "tracking"
    conf.mkdir(parents=True)
    (conf / "shared.yaml").write_text(
        "uri: postgresql://bench:hunter2@127.0.0.1:1/mlflow\ndefault_uri: null\n")
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--config-dir", str(tmp_path / "myconf"),
         "tracking=shared", "dataset=synthetic"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == errors.EXIT_CODE, out
    first = out.strip().splitlines()[0]
    assert first.startswith("error: tracking.uri: a password written in a file is not supported")
    assert f"${stores.TRACKING_ENV}" in first and "hunter2" not in out
    assert not (tmp_path / "outputs").exists()


def test_a_password_in_a_study_definition_is_refused_naming_the_variable(tmp_path):
    from bench.errors import StudyError
    from bench.study import load

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntuning: {storage: 'postgresql://bench:hunter2@db/optuna'}\n"
                    "datasets:\n  synthetic: {overrides: [dataset=synthetic]}\n")
    with pytest.raises(StudyError) as err:
        load(path)
    assert str(err.value).startswith("tuning.storage: a password in the URL is not allowed in")
    assert f"${stores.STORAGE_ENV}" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(StudyError) as err:
        load(path, ["tracking_uri=postgresql://bench:hunter2@db/mlflow"])
    assert "hunter2" not in str(err.value)
