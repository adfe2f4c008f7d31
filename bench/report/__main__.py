"""``python -m bench.report --study <name>``: MLflow runs -> ``reports/<name>/``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import tracking
from bench.report.build import build
from bench.report.stats import ALPHA, TESTS


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Write reports/<study>/README.md, results.csv and figures from the MLflow "
        "runs of a study (python -m bench.study).",
    )
    ap.add_argument("--study", required=True, help="the study name (MLflow tag study=<name>)")
    ap.add_argument("--tracking-uri", default=None,
                    help="MLflow store; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    ap.add_argument("--out", default=None, help="output folder; default reports/<study>")
    ap.add_argument("--storage", default=None,
                    help="Optuna storage URL when the recorded one is masked (it has a password)")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="significance level")
    ap.add_argument("--test", choices=TESTS, default="t",
                    help="per-dataset test across seeds: paired t (default) or Wilcoxon")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking.resolve_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    out = Path(args.out or Path("reports") / args.study)
    try:
        build(args.study, uri, out, alpha=args.alpha, test=args.test, storage=args.storage)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'README.md'} and {out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
