"""``python -m bench.study DEFINITION [key=value ...]``: the command line of a study."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.errors import EXIT_CODE, StudyError
from bench.stores import mask
from bench.study.definition import load


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m bench.study",
        description="Tune every dataset x architecture with an equal budget, retrain the best "
        "configuration under k seeds, run the baselines; resumable (finished work is skipped).",
    )
    ap.add_argument("definition", help="study definition, e.g. sweeps/study_cpu.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value changes to the definition "
                    "(e.g. seeds=3 tuning.n_trials=4)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print what is done and what would run, run nothing")
    ap.add_argument("--datasets", default=None,
                    help="comma-separated share of the definition's datasets for this process, run "
                    "in this order; run several processes on disjoint shares (same stores) to "
                    "use more cores")
    rec = ap.add_mutually_exclusive_group()
    rec.add_argument("--record", type=Path, default=None,
                     help="a committed tidy record whose finished runs and tuning trials count "
                     "as done (default: reports/<study>/record/ when it exists)")
    rec.add_argument("--no-record", action="store_true",
                     help="resume from the MLflow and Optuna stores only")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        study = load(args.definition, args.overrides)
        if args.datasets:
            only = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
            unknown = [d for d in only if d not in study.definition.datasets]
            if unknown:
                raise StudyError(f"--datasets: {unknown} not in {args.definition}; expected "
                                 f"some of {list(study.definition.datasets)}")
            study = replace(study, only=only)
        # the definition is sound: now the heavy imports (MLflow, torch, Lightning)
        from bench.results.record import locate
        from bench.study.resume import Committed

        path = args.record or locate(Path("reports") / study.name)
        committed = None if args.no_record or path is None else Committed.load(path, study.name)
        if args.record is not None and committed is None:
            raise StudyError(f"--record {args.record}: not found (a record folder or CSV file)")
    except StudyError as exc:
        # a mistake in the definition is the user's to fix, like a bad config value: one
        # line and exit status 1 (argparse's usage block and status 2 are for bad flags)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    command = shlex.join(["python", "-m", "bench.study", *argv])
    from bench import errors, interrupt
    from bench.study.runner import Runner

    try:
        # Ctrl-C / SIGTERM end the run or trial in flight at its next batch (closed KILLED,
        # a trial queued again); the exit status is then 128 + the signal.
        with interrupt.deferred():
            failures = Runner(study, dry_run=args.dry_run, committed=committed).run(command)
    except (KeyboardInterrupt, SystemExit) as exc:
        if interrupt.received() is None and not isinstance(exc, KeyboardInterrupt):
            raise
        print(f"study {study.name} stopped by {interrupt.signal_name()}; finished work is "
              f"kept. Resume with: {mask(command)}", file=sys.stderr)
        return interrupt.exit_code()
    except Exception as exc:
        # a known error, or a full disk hit outside any run (the study's own session record)
        known = exc if isinstance(exc, errors.BenchError) else errors.out_of_space(exc, {
            "the MLflow store": study.tracking_store.sqlite_file,
            "the Optuna storage": study.storage.sqlite_file})
        if known is None or errors.wants_traceback():
            raise
        errors.report(known)
        print(f"Resume with: {mask(command)}", file=sys.stderr)
        return errors.EXIT_CODE
    if failures:
        print(f"{failures} final run(s) failed; re-run the same command to retry them.")
    print(f"Report: python -m bench.report --study {study.name} --tracking-uri "
          f"{study.tracking_store}")
    return 1 if failures else 0
