"""``python -m bench.report.run_card``: one recorded run as a committed report.

Reference-setup runs (``+experiment=mnist_gru`` and friends) answer "does the harness
reproduce the tutorial's number?"; this writes such a run's record from MLflow into
``reports/runs/<name>/`` (its command, hardware, budget, metrics and curves) so the
numbers in ``reports/`` always come from a stored run, never from hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import plots, tracking
from bench.report.figures import save


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(i, m.value) for i, m in enumerate(
        sorted(client.get_metric_history(run_id, key), key=lambda m: m.step))]


def _epoch_times(client, run_id: str) -> str:
    times = sorted(m.value for m in client.get_metric_history(run_id, "time/epoch_s"))
    if not times:
        return "(not recorded)"
    median = times[len(times) // 2]
    return f"{times[0]:.1f} s to {times[-1]:.1f} s, median {median:.1f} s"


def write_card(uri: str, run_id: str, out: Path) -> str:
    client = tracking.client_for(tracking.resolve_uri(uri))
    run = client.get_run(run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    metric = tags.get("metric", "accuracy")
    history = {k: _history(client, run_id, k)
               for k in ("train/loss", "val/loss", f"val/{metric}", f"val/naive_{metric}")}
    out.mkdir(parents=True, exist_ok=True)
    save(plots.learning_curves({k: v for k, v in history.items() if v}, metric),
         out / "learning_curves.png")
    wall = metrics.get("time/wall_s", (run.info.end_time - run.info.start_time) / 1000)
    iterations = None
    steps = client.get_metric_history(run_id, "train/loss")
    if steps:
        iterations = int(max(m.step for m in steps)) + 1
    rows = [(k.removeprefix("test/"), v) for k, v in sorted(metrics.items())
            if k.startswith("test/") and not k.startswith("test/naive_") and k != "test/loss"]
    lines = [
        f"# {tags.get('mlflow.runName', run_id)}",
        "",
        f"- Command: `{tags.get('command') or 'python -m bench ...'}`",
        f"- Data: `{params.get('dataset.name')}` from `BENCH_DATA_DIR` "
        f"({tags.get('task', '')}, primary metric {metric})",
        f"- Model: {tags.get('arch')} ({params.get('model.impl', '-')} implementation), "
        f"{int(float(params.get('n_params', 0))):,} parameters",
        f"- Budget: {int(metrics.get('epochs_trained', 0))} epochs"
        + (f", {iterations:,} iterations" if iterations else "")
        + f" of batch {params.get('batch_size')}, optimizer {params.get('optim.name')} "
          f"lr {params.get('optim.lr')}, seed {tags.get('seed')}",
        f"- Hardware: {tags.get('hardware', 'not recorded')}",
        f"- Wall time: {wall:.0f} s; epochs took {_epoch_times(client, run_id)} "
        "(a slow epoch is time the machine gave to other work)",
        f"- Code: `{tags.get('git_sha', 'unknown')}`; MLflow run `{run_id}`",
        "",
        "| test metric | model | naive baseline |",
        "|---|---|---|",
    ]
    for name, value in rows:
        base = metrics.get(f"test/naive_{name}")
        lines.append(f"| {name} | {value:.4f} | {'' if base is None else f'{base:.4f}'} |")
    best = metrics.get(f"best/val_{metric}")
    if best is not None:
        lines.append(f"| best validation {metric} | {best:.4f} | |")
    lines += ["", "![learning curves](learning_curves.png)", ""]
    text = "\n".join(lines)
    (out / "README.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report.run_card", description=__doc__)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", type=Path, required=True, help="e.g. reports/runs/mnist_gru")
    args = parser.parse_args(argv)
    print(write_card(args.tracking_uri, args.run_id, args.out))


if __name__ == "__main__":
    main()
