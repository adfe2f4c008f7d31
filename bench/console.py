"""What a run prints: the short table at its end, the progress bar, and nothing else.

Lightning and the libraries around it print for their own reasons (an advert for a cloud
logger on every run, "`Trainer.fit` stopped" written onto the progress bar's line, the
logger's version as the bar's only figure, MLflow's table migrations); those lines are
filtered here, at their loggers, so the terminal keeps what a user reads: the bar with the
training loss and the validation metric, then the table.
"""

from __future__ import annotations

import logging
import math
import warnings

from rich.console import Console
from rich.table import Table

from bench import tracking

# Messages dropped from Lightning's loggers, by their opening words.
_NOISE = (
    "💡 Tip",  # an advert for a third-party cloud logger, printed by every Trainer
    "`Trainer.fit` stopped",  # written onto the bar's line; the table says how many epochs ran
    "Restoring states from the checkpoint",  # the best epoch is re-loaded for the test, as
    "Loaded model weights from the checkpoint",  # always; the checkpoint is the run's tag
    "GPU available:",  # the accelerators every Trainer lists; the run's device is recorded
    "TPU available:",  # with it (and Lightning still warns when a GPU is present but unused)
    "HPU available:",
)
_LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


# Warnings that say nothing a user can act on.
_KNOWN_WARNINGS = (
    r".*does not have many workers.*",  # batches are gathered in the main process, on purpose
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning's own use of a torch API it must update
)


def drop_known_warnings() -> None:
    """Filter the warnings above; called when a run starts, not when a module is imported.

    Optuna's and the sweep's ``warnings.catch_warnings()`` blocks restore the filters they
    found, so a filter added by an import that happened inside one was lost again and the
    warning came back on every later run of the process. ``filterwarnings`` replaces an
    identical filter, so calling this once per run does not grow the list.
    """
    for pattern in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(_NOISE)


_FILTER = _DropNoise()


def quiet_third_party() -> None:
    """Lightning's messages go through Hydra's handlers once, without the adverts or the
    known warnings. :func:`bench.train.run` calls it as each run starts, so every entry point
    (a single run, a sweep worker, the study) prints the same; calling it again is harmless.

    Hydra's logging config (or the caller's ``basicConfig``) already writes to the console,
    so Lightning's own console handlers are dropped (each message would appear twice).
    Lightning installs them when it is first imported, so it is imported here first: a
    caller that had not imported it yet would otherwise get them back afterwards.
    """
    import lightning.pytorch  # noqa: F401

    drop_known_warnings()
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if name in ("lightning", "lightning.pytorch"):
            logger.handlers.clear()
            logger.propagate = True
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def progress_bar():
    """Lightning's bar without ``v_num``: with MLflow that is the run id, which the table shows."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    class Bar(TQDMProgressBar):
        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            return items

    return Bar()


def format_value(value: float, units: str | None = None) -> str:
    """A number as a reader compares it: thousands separated, four significant digits.

    Values in the dataset's units (shares traded, degrees Celsius) get the precision their
    size calls for: ``2,632,125`` shares, ``2.571`` degC, not ``2632125.0000``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if units is None:
        return f"{value:.4f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


_ORDER = ("mae", "rmse", "r2", "mase", "mae_units", "rmse_units")


def summary_rows(metric: str, units: str | None, test: dict) -> list[tuple[str, str, str]]:
    """``(label, model, naive)`` rows: the primary metric first, the rest as logged."""
    rows = []
    for name in [metric] + [m for m in _ORDER if m != metric]:
        value = test.get(f"test/{name}")
        if value is None:
            continue
        base = test.get(f"test/naive_{name}")
        in_units = name.endswith("_units")
        label = f"test {name[: -len('_units')]} ({units or 'units'})" if in_units else (
            f"test {name}")
        fmt_units = (units or "") if in_units else None
        rows.append((label, format_value(value, fmt_units),
                     "" if base is None else format_value(base, fmt_units)))
    return rows


def print_summary(cfg, result, console: Console | None = None) -> None:
    console = console or Console()
    metric = cfg.dataset.metric
    table = Table(title=f"{cfg.dataset.name} / {result.run_id[:8]} ({result.status})")
    for col in ("metric", "model", "naive baseline"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for row in summary_rows(metric, result.units, result.test_metrics):
        table.add_row(*row)
    table.add_row(f"best val {metric}", format_value(result.objective), "")
    table.add_row("parameters", f"{result.n_params:,}", "")
    table.add_row("epochs / wall time", f"{result.epochs_trained} / {result.wall_time_s:.1f} s", "")
    console.print(table)
    console.print(f"MLflow run {result.run_id}", highlight=False)
    # soft_wrap: the command stays on one line whatever the terminal's width, so it can be
    # copied and pasted as it is
    store = result.store or tracking.store_of(cfg)
    hint = tracking.open_ui_hint(store, result.experiment_id)
    console.print(f"compare runs with: {hint}", soft_wrap=True,
                  highlight=False, markup=False)
