"""MLflow helpers: one place that knows the store, run layout, tags and params.

The tracking URI is always passed explicitly (Lightning's ``MLFlowLogger`` would otherwise
read a default at import time), and a relative SQLite path is made absolute against the
directory the user ran from, so every run of a sweep lands in the same store whatever
its working directory.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_BATCH = 100  # MLflow's limit on params per log_batch call


def launch_dir() -> Path:
    """The directory the user launched from (Hydra's original cwd when inside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):
        pass
    return Path.cwd()


def resolve_uri(uri: str | None) -> str:
    uri = uri or "sqlite:///mlflow.db"
    m = re.match(r"^sqlite:///(.*)$", uri)
    if m and m.group(1) and not m.group(1).startswith("/") and m.group(1) != ":memory:":
        return f"sqlite:///{(launch_dir() / m.group(1)).resolve()}"
    return uri


def default_artifact_root(uri: str) -> str | None:
    """``mlartifacts/`` beside a local SQLite store; a server decides for itself."""
    m = re.match(r"^sqlite:///(/.*)$", uri)
    if m:
        return (Path(m.group(1)).parent / "mlartifacts").as_uri()
    return None


def mask_secrets(text: str) -> str:
    """Hides the password in URLs such as ``postgresql://user:secret@host/db``."""
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", str(text))


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """Gets or creates the experiment; tolerates a concurrent worker creating it first."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root:
        location = f"{artifact_root.rstrip('/')}/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [
        Param(k, mask_secrets(str(v))[:_MAX_PARAM]) for k, v in sorted(params.items())
    ]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i : i + _BATCH], synchronous=True)


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, mask_secrets(str(v))[:5000]) for k, v in tags.items() if v is not None]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, tags=items[i : i + _BATCH], synchronous=True)


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0):
    import time

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, metrics=items[i : i + _BATCH], synchronous=True)


def start_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> str:
    all_tags = {k: mask_secrets(str(v)) for k, v in tags.items() if v is not None}
    all_tags["mlflow.runName"] = run_name
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def open_ui_hint(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return f"mlflow ui --backend-store-uri {uri}"
    return f"open {uri}"
