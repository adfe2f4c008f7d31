"""``python -m bench.report --study <name>`` (MLflow and Optuna -> the tidy record
``reports/<name>/record/`` -> the report) or ``python -m bench.report --from <record>`` (the
record alone -> the report)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report.build import build, build_from_record
from bench.report.html import HTML_NAME
from bench.report.stats import ALPHA, TESTS
from bench.results.record import RECORD_NAME
from bench.stores import StoreAddress


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Write reports/<study>/README.md, index.html, results.csv and figures: "
        "from the MLflow "
        "runs of a study (python -m bench.study), through its tidy record, or from a tidy "
        "record alone.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="the study name (MLflow tag study=<name>); writes "
                     f"<out>/{RECORD_NAME} first, then builds from it")
    src.add_argument("--from", dest="record", type=Path, default=None,
                     help=f"a tidy record (a {RECORD_NAME}/ folder, or a single CSV file); the "
                     "report goes beside it unless --out")
    ap.add_argument("--tracking-uri", default=None,
                    help="MLflow store; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    ap.add_argument("--out", default=None, help="output folder; default reports/<study>")
    ap.add_argument("--storage", default=None,
                    help="Optuna storage URL when the recorded one is masked (it has a password)")
    ap.add_argument("--replace", action="store_true",
                    help=f"with --study: write <out>/{RECORD_NAME} from the stores alone, dropping "
                    "runs that only the existing record holds (default: keep them, so a study "
                    "resumed over several sittings or machines keeps its earlier runs)")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="significance level")
    ap.add_argument("--test", choices=TESTS, default="welch",
                    help="per-dataset test across seeds: Welch's unpaired t (default) or paired t "
                    "where the seed sets match")
    ap.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                    help="write <out>/index.html, the report as one static page (the figures "
                    "beside it, no server or network needed); written by default, --no-html "
                    "skips it")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        if args.record is not None:
            out = Path(args.out or args.record.parent)
            build_from_record(args.record, out, alpha=args.alpha, test=args.test,
                              write_html=args.html)
        else:
            store = StoreAddress.tracking(args.tracking_uri)
            out = Path(args.out or Path("reports") / args.study)
            build(args.study, store, out, alpha=args.alpha, test=args.test, storage=args.storage,
                  keep=not args.replace, write_html=args.html)
    except (KeyError, IndexError):
        raise   # a bug, not a missing study or record
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wrote = [out / "README.md", *([out / HTML_NAME] if args.html else []), out / "results.csv"]
    wrote += [] if args.record else [out / RECORD_NAME]
    print("wrote " + ", ".join(map(str, wrote)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
