"""The short table printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bench import tracking


def print_summary(cfg, result, console: Console | None = None) -> None:
    console = console or Console()
    metric = cfg.dataset.metric
    table = Table(title=f"{cfg.dataset.name} / {result.run_id[:8]} ({result.status})")
    for col in ("metric", "model", "naive baseline"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    names = [metric] + [m for m in ("mae", "rmse", "r2", "mae_units", "rmse_units") if m != metric]
    for name in names:
        value = result.test_metrics.get(f"test/{name}")
        if value is None:
            continue
        base = result.test_metrics.get(f"test/naive_{name}")
        table.add_row(f"test {name}", f"{value:.4f}", "" if base is None else f"{base:.4f}")
    table.add_row(f"best val {metric}", f"{result.objective:.4f}", "")
    table.add_row("parameters", f"{result.n_params:,}", "")
    table.add_row("epochs / wall time", f"{result.epochs_trained} / {result.wall_time_s:.1f} s", "")
    console.print(table)
    uri = tracking.resolve_uri(cfg.tracking.uri)
    console.print(f"MLflow run {result.run_id}; compare runs with: {tracking.open_ui_hint(uri)}")
