"""MLflow helpers: one place that knows the run layout, tags and params.

The store is always passed explicitly, as a :class:`~bench.stores.StoreAddress` (Lightning's
``MLFlowLogger`` would otherwise read a default at import time); its rules (defaults, absolute
SQLite paths, passwords) are :mod:`bench.stores`'s.

An MLflow tracking server is probed once before the first experiment is opened, so a server
that is down is one message within seconds, and MLflow's own HTTP retries are bounded here
(:data:`HTTP_DEFAULTS`): its defaults retry a dead server for about four minutes per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.errors import (
    SQLITE_FULL,
    OutOfSpaceError,
    StorageError,
    out_of_space_cause,
    out_of_space_text,
    short_reason,
)
from bench.stores import StoreAddress, mask, schema_lock
from bench.vocab import is_recurrent, uses_num_layers

# MLflow's HTTP client retries connection errors, 429 and 5xx with exponential backoff. Its
# defaults (7 retries, backoff factor 2, 120 s timeout) ride out long rate limits but make a
# server that went away hang a run for four minutes on every request; these bound a request
# to about 10 s of retries (0 + 2 + 4 s, plus jitter) while still riding out a server restart.
# Set by ``setdefault``: a value in the environment wins, and worker processes inherit them.
HTTP_DEFAULTS = MappingProxyType({
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
})
for _name, _value in HTTP_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
PROBE_TIMEOUT_S = 5.0
log = logging.getLogger("bench.tracking")
PROBE_ATTEMPTS = 2


def _not_store_full(record: logging.LogRecord) -> bool:
    """MLflow logs the whole traceback of a full SQLite store before raising it; the raise
    reaches the user once, as an :class:`~bench.errors.OutOfSpaceError`."""
    return SQLITE_FULL not in record.getMessage()


logging.getLogger("mlflow.store.db.utils").addFilter(_not_store_full)
# A new SQLite store announces its table creation and migrations, on the first run or sweep
# in a folder; whoever opens a store (a run, a sweep's parent, the study) keeps it quiet.
for _name in ("mlflow.store.db.utils", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PARENT_TAG = "mlflow.parentRunId"
# Tag names: the contract between the runs, the sweeps and studies that start them, and the
# report that reads them back. Keys are what the code means, values what MLflow stores.
TAGS = MappingProxyType({
    # every run (bench.train), and the sweep's parent run
    "dataset": "dataset", "arch": "arch", "cell": "cell", "topology": "topology",
    "seed": "seed", "git_sha": "git_sha", "metric": "metric", "direction": "direction",
    "hardware": "hardware", "command": "command", "units": "units", "task": "task",
    "checkpoint": "checkpoint", "error": "error", "pruned": "pruned",
    "fit": "fit",                        # fitted | did not fit (bench.vocab.FIT_RATIO)
    "threads": "torch_threads",          # torch's intra-op threads when the run trained
    # studies (bench.study) and the report
    "study": "study",                    # the study's name (bench.train sets it from cfg.study)
    "phase": "phase",                    # session | tune | final | baseline
    "study_dataset": "study_dataset",    # the study's dataset key (two keys may share a dataset)
    "tuning_seed": "tuning_seed",        # the sampler seed of the tuning a final run retrains
    "optuna_study": "optuna_study",
    "optuna_storage": "optuna_storage",  # password masked
    "best_trial": "best_trial",
    "tracking_uri": "tracking_uri",
    # sweeps (bench.sweep)
    "optuna_trial": "optuna_trial",
    "sweep_role": "sweep_role",          # parent | trial
    "retry_of": "retry_of",              # the trial number a retried trial repeats
    "optuna_space": "optuna_space",
})

# The Optuna trial attribute that links a trial to its MLflow run.
RUN_ID_ATTR = "mlflow_run_id"
# MLflow 3's UI picks its view from this experiment tag; untagged experiments may open in
# the GenAI view (traces, evaluations), which has nothing to show for a training run.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_BATCH = 100  # MLflow's limit on params per log_batch call


def default_artifact_root(store: StoreAddress) -> str | None:
    """``mlartifacts/`` beside a local SQLite store; a server decides for itself."""
    path = store.sqlite_file
    return (path.parent / "mlartifacts").as_uri() if path is not None else None


def store_of(cfg: Any) -> StoreAddress:
    """The run's MLflow store, from its ``tracking`` config: ``tracking.uri``, else
    ``$MLFLOW_TRACKING_URI``, else the config's ``tracking.default_uri``."""
    t = cfg.tracking
    return StoreAddress.tracking(t.get("uri"), default=t.get("default_uri"))


def client_for(store: StoreAddress) -> MlflowClient:
    """A client for ``store``; a store that cannot be opened raises :class:`StorageError`.

    MLflow opens (and for SQLite creates and migrates) the store here, so any failure at
    this point, whatever its type, is the store's. Creating an SQLite schema is not safe
    against a second process doing the same (both see no tables, the second one's
    migration fails), so it happens under :func:`schema_lock`. A tracking server is probed
    first (:func:`check_reachable`), so one that is down is one message within seconds.
    """
    check_reachable(store)
    try:
        with schema_lock(store.sqlite_file):
            try:
                return MlflowClient(tracking_uri=store.connect())
            except Exception as e:
                if out_of_space_cause(e) is not None or not _unfinished_sqlite(store.sqlite_file):
                    raise
                # A process outside this lock (a plain MlflowClient, `mlflow ui`) may be making
                # the schema right now: a store it finishes meanwhile is kept.
                time.sleep(UNFINISHED_GRACE_S)
                try:
                    return MlflowClient(tracking_uri=store.connect())
                except Exception:
                    if not _unfinished_sqlite(store.sqlite_file):
                        raise
                # made again under the same lock: no other process sees the file in between
                _remove_unfinished(cast(Path, store.sqlite_file), store.connect(), e)
                return MlflowClient(tracking_uri=store.connect())
    except Exception as e:
        raise storage_error(store, e) from e


UNFINISHED_GRACE_S = 3.0


def _unfinished_sqlite(path: Path | None) -> bool:
    """Whether an SQLite store that would not open is one whose creation never finished (a full
    disk or a kill while MLflow laid out its tables): no run, no experiment of its own.

    MLflow creates a store by running its schema migrations one after another, each committed;
    one cut short leaves tables half made (``table _alembic_tmp_params already exists``) and
    every later open fails the same way. Such a file holds nothing that could be lost.
    """
    import sqlite3

    if path is None or not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(str(path))) as db:
            tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
            for table, most in (("runs", 0), ("experiments", 1), ("logged_models", 0)):
                if table in tables and db.execute(f"select count(*) from {table}").fetchone()[0] > most:
                    return False
    except sqlite3.Error:
        return False
    return True


def _remove_unfinished(path: Path, uri: str, cause: BaseException) -> None:
    log.warning("the MLflow store %s was left half-made (%s), with no runs in it: made afresh",
                path, short_reason(cause))
    # MLflow keeps one engine per database URI for the life of the process (a class-level map
    # of its SQLAlchemy store); one still open on the removed file would see the old tables
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
    if engine is not None:
        engine.dispose()
    for extra in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """Gets or creates the experiment as a training experiment.

    Tolerates a concurrent worker creating it first. An experiment made before it carried
    a kind (an older store) is given one, so the UI opens it in its model-training view;
    a kind someone set by hand is left alone. A store that cannot be reached or written
    raises :class:`StorageError` naming the store and the fix.
    """
    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
            try:
                return client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException:
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if EXPERIMENT_KIND_TAG not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    except (MlflowException, OSError) as e:
        raise storage_error(StoreAddress.tracking(client.tracking_uri), e) from e


_reachable: set[str] = set()


def check_reachable(store: StoreAddress) -> None:
    """Fails fast, with one :class:`StorageError`, when an http(s) tracking server does not
    answer.

    Without it the first MLflow request to a server that is down waits out MLflow's
    retries (minutes with its defaults), and a sweep would start workers only for each to
    fail the same way. Any HTTP answer counts as reachable, even an error status: a proxy
    or an authenticating front may answer ``/health`` differently, and MLflow's own
    requests report such problems. A TLS error counts too, for MLflow may be configured to
    accept the certificate (``MLFLOW_TRACKING_INSECURE_TLS``, a CA bundle). Checked once per
    process and server.
    """
    uri = store.connect()
    if not store.is_http or uri in _reachable:
        return
    import time

    import requests

    url = f"{uri.rstrip('/')}/health"
    for attempt in range(PROBE_ATTEMPTS):
        try:
            requests.get(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False)
            break
        except requests.exceptions.SSLError:
            break
        except requests.exceptions.RequestException as exc:
            if attempt + 1 == PROBE_ATTEMPTS:
                reason = short_reason(exc).split(" (")[0]
                raise StorageError(
                    f"MLflow tracking server {uri} is unreachable ({reason}); "
                    "start it or set tracking.uri") from exc
            time.sleep(1.0)
    _reachable.add(uri)


def open_experiment(store: StoreAddress, name: str,
                    artifact_root: str | None = None) -> tuple[MlflowClient, str]:
    """A client and the experiment id: every run and sweep starts here."""
    client = client_for(store)
    return client, ensure_experiment(client, name, artifact_root or default_artifact_root(store))


def standard_tags(cfg: Any, arch: str) -> dict[str, Any]:
    """The tags every run of ``cfg`` carries, so runs, sweeps and studies filter alike."""
    return {
        TAGS["dataset"]: cfg.dataset.name,
        TAGS["arch"]: arch,
        TAGS["cell"]: cfg.model.cell,
        TAGS["topology"]: cfg.model.get("topology", "none"),
        TAGS["study"]: cfg.get("study"),
        TAGS["metric"]: cfg.dataset.metric,
        TAGS["direction"]: cfg.dataset.direction,
        TAGS["git_sha"]: git_sha(),
        TAGS["threads"]: torch_threads(),
    }


def torch_threads() -> int | None:
    """torch's intra-op thread count, when torch is loaded (a sweep's parent never loads it).

    Recorded with every run because on a CPU the thread count changes the order of float
    reductions, and a long recurrent training can carry that rounding into a different
    result: the same GunPoint BiLSTM final run, same commit and config, tests at 60.7% on one
    thread and 68.0% on two. A re-run (``bench.study.rerun``) uses the recorded count."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def storage_error(store: StoreAddress, exc: BaseException) -> StorageError:
    """One sentence for a store that failed: which store, what it said, what to do."""
    reason = short_reason(exc)
    where = str(store)
    path = store.sqlite_file
    if path is not None and out_of_space_cause(exc) is not None:
        return OutOfSpaceError(out_of_space_text(
            "the MLflow store", path, " or choose another store with tracking.uri=..."))
    if "_alembic_tmp_" in reason:   # a migration cut short in a store that holds runs
        fix = ("an upgrade of its tables was cut short (a full disk or a kill); keep a copy of "
               "the file, drop the leftover _alembic_tmp_* table and run `mlflow db upgrade "
               f"{where}`, or restore the file from a backup")
    elif store.is_sqlite:
        fix = ("check that the folder exists and is writable; several parallel workers need "
               "an MLflow server instead (tracking=server, see docs/sweeps.md)")
    else:
        fix = ("start the server (mlflow server --host 127.0.0.1 --port 5000) or choose "
               "another store with tracking.uri=... (default: sqlite:///mlflow.db)")
    return StorageError(f"tracking.uri: the MLflow store {where} failed ({reason}); {fix}")


@cache
def git_sha() -> str:
    """The commit of the code that ran (``+dirty`` when uncommitted changes were present)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_GIT_SHA", "unknown")


@cache
def hardware() -> str:
    """CPU model and cores, GPU if any, and the torch build: enough to read timings against."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "; no GPU"
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        gpu = f"; {torch.cuda.device_count()} GPU ({', '.join(names)})"
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def command_line() -> str | None:
    """The ``python -m bench ...`` command of the current Hydra job, overrides included."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return " ".join(["python -m bench", *HydraConfig.get().overrides.task])
    except (ImportError, ValueError):
        pass
    return None


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# Keys that say where a dataset's files come from and how they are verified, or where a
# run writes: not knobs anyone compares runs by, and long (md5s, URLs, machine paths). The
# run's config.yaml artifact keeps them.
_FILE_KEYS = frozenset({"files", "sources", "mirrors", "subdir", "member", "expected", "expected_rows",
                        "expected_columns", "expected_dates", "md5", "sha256", "url",
                        "target_presets"})
_NOT_KNOBS = frozenset({"data_dir", "run_name", "study", "tracking", "folds",
                        "trainer.enable_progress_bar", "trainer.log_every_n_steps"})
_TOKEN_KEYS = ("model.embedding_dim", "model.embedding.")


def _unused_model_keys(model: Mapping[str, Any]) -> set[str]:
    """The model keys the built model ignores under this config (cell, topology, head)."""
    unused = set()
    if is_recurrent(model.get("cell")):
        if not uses_num_layers(model):
            unused.add("model.num_layers")
        if model.get("head") != "mlp":
            unused.add("model.head_hidden")
        if model.get("cell") != "lstm":
            unused.add("model.forget_bias")
        if model.get("impl") != "cell":
            unused.add("model.recurrent_dropout")
    return unused


def run_params(resolved: Mapping[str, Any], tokens: bool) -> dict[str, Any]:
    """The params of a run: the knobs a user compares runs by (dataset, model, optimiser,
    trainer, seed), as flattened Hydra keys, without the keys this run does not use.

    ``tokens``: the dataset feeds token ids, so the embedding keys are in use.
    """
    flat = flatten(resolved)
    unused = _unused_model_keys(resolved.get("model") or {})
    optim = resolved.get("optim") or {}
    if optim.get("name") != "sgd":
        unused.add("optim.momentum")
    schedule = optim.get("schedule") or "none"
    if schedule == "none":
        unused.add("optim.min_lr")
    if schedule != "plateau":
        unused |= {"optim.plateau_factor", "optim.plateau_patience"}
    out = {}
    for key, value in flat.items():
        parts = key.split(".")
        if value is None or key in unused or parts[0] in _NOT_KNOBS or key in _NOT_KNOBS:
            continue
        if parts[0] == "dataset" and _FILE_KEYS.intersection(parts[1:]):
            continue
        if not tokens and key.startswith(_TOKEN_KEYS):
            continue
        out[key] = value
    return out


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [
        Param(k, mask(str(v))[:_MAX_PARAM]) for k, v in sorted(params.items())
    ]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i : i + _BATCH], synchronous=True)


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, mask(str(v))[:5000]) for k, v in tags.items() if v is not None]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, tags=items[i : i + _BATCH], synchronous=True)


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0):
    import time

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, metrics=items[i : i + _BATCH], synchronous=True)


_METRIC_BATCH = 1000  # MLflow's limit on metrics per log_batch call


def log_metric_entities(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    """Metrics that carry their own time and step (a run's history), in as few requests as
    MLflow's limits allow."""
    for i in range(0, len(metrics), _METRIC_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _METRIC_BATCH], synchronous=True)


def start_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> str:
    all_tags = {k: mask(str(v)) for k, v in tags.items() if v is not None}
    all_tags["mlflow.runName"] = run_name
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


UI_PORT = 5000  # where ``mlflow ui`` serves by default


def ui_url(base: str, experiment_id: str | None = None) -> str:
    """The experiment's runs page in the UI's model-training view.

    MLflow 3.17's UI takes its view from a switch that defaults to GenAI for every
    experiment, whatever the experiment's kind tag; ``workflowType=machine_learning`` in
    the address selects the training view (runs, metrics, models) on opening.
    """
    page = f"/experiments/{experiment_id}/runs" if experiment_id else "/experiments"
    return f"{base.rstrip('/')}/#{page}?workflowType=machine_learning"


def open_ui_hint(store: StoreAddress, experiment_id: str | None = None) -> str:
    """The command (or address) that shows the runs of ``store``, for the end-of-run line."""
    if store.is_sqlite:
        url = ui_url(f"http://127.0.0.1:{UI_PORT}", experiment_id)
        return f"mlflow ui --backend-store-uri {store}   then open {url}"
    address, note = store.shell_form()
    if store.is_http:
        return f"open {ui_url(address, experiment_id)}"
    # a database store: the password as a shell variable, so that the line can be pasted
    url = ui_url(f"http://127.0.0.1:{UI_PORT}", experiment_id)
    return " ".join(filter(None, [
        f"mlflow ui --backend-store-uri {address}   then open {url}", note]))


# A tracking store that hiccups (a server restarting, a proxy's 502/503, a rate limit, an
# SQLite file locked by another writer for longer than its timeout) says nothing about the
# configuration a trial was testing. MLflow retries each HTTP request a few times already;
# an error that outlasts those retries is still no reason to count the trial as failed.
_TRANSIENT_TYPES = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout",
                    "MaxRetryError", "NewConnectionError", "ProtocolError",
                    "RemoteDisconnected", "ConnectionResetError", "ConnectionRefusedError")
_TRANSIENT_TEXT = re.compile(
    r"error code (429|5\d\d)\b|Max retries exceeded|Connection (refused|reset|aborted)|"
    r"database is locked|TEMPORARILY_UNAVAILABLE|Service Unavailable|Bad Gateway|"
    r"Gateway Time-?out|Too Many Requests", re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a passing failure of the
    tracking store or its network, rather than of the run itself."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ in _TRANSIENT_TYPES:
            return True
        store_error = isinstance(e, MlflowException | OSError) or type(e).__module__.startswith(
            ("requests", "urllib3", "sqlalchemy", "sqlite3"))
        if store_error and _TRANSIENT_TEXT.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False
