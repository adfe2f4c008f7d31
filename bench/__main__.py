"""``python -m bench``: the Hydra entry point (single runs and ``-m`` sweeps).

Known errors (:mod:`bench.errors`) end the command with their one message, not with
Hydra's "Error executing job" and a traceback; ``--verbose`` or ``HYDRA_FULL_ERROR=1``
brings the traceback back. The config is checked before torch and Lightning are imported,
and a run refused by its config leaves no ``outputs/`` folder behind. A password in a URL
on the command line is masked before Hydra saves the command line (:mod:`bench.stores`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bench import errors, stores
from bench.config import CONF_DIR
from hydra_plugins.bench_sweeper import register as register_sweeper

_SHOW_TRACEBACK = False  # set by cli() from --verbose / HYDRA_FULL_ERROR


# An absolute path: the same tree whether bench runs from a checkout or from a wheel.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return _run(cfg)
    except Exception as exc:
        # Inside the job, before Hydra files the exception under "Error executing job";
        # a sweep's trials are left to the sweeper, which records each failure.
        if errors.is_known(exc) and not _SHOW_TRACEBACK and _single_run():
            errors.report(exc)
            raise SystemExit(errors.EXIT_CODE) from None
        raise


def _run(cfg: DictConfig) -> float:
    from bench.config import refuse_written_passwords, validate

    try:
        refuse_written_passwords(cfg)
        validate(cfg)
    except errors.ConfigError:
        _discard_run_dir()
        raise

    from bench import tracking

    # A tracking server that is down is one message before torch and Lightning load.
    tracking.check_reachable(tracking.store_of(cfg))

    from bench import interrupt
    from bench.console import print_summary
    from bench.train import run
    from bench.vocab import DETERMINISTIC_CELLS

    # Ctrl-C and SIGTERM stop the run between batches, where its MLflow run can be closed
    # KILLED; the exit code then says which signal it was (see cli()).
    with interrupt.deferred():
        try:
            if cfg.model.cell in DETERMINISTIC_CELLS:
                from bench import classical

                result = classical.run(cfg)
            else:
                result = run(cfg, callbacks=[interrupt.SafePointInterrupt()])
        except errors.DataError:
            _discard_run_dir()  # refused before any run was recorded: nothing to keep
            raise
    print_summary(cfg, result)
    return result.objective


def _single_run() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def _discard_run_dir() -> None:
    """Removes the run folder Hydra made for a single run that never started.

    It holds only Hydra's copy of the refused config and an empty log; kept, every typo
    would leave a dated folder to wade through. Sweep jobs keep theirs: the sweep owns them.
    """
    from hydra.core.hydra_config import HydraConfig

    if not _single_run():
        return
    hc = HydraConfig.get()
    out, root = Path(hc.runtime.output_dir), Path(hc.runtime.cwd).resolve()
    shutil.rmtree(out, ignore_errors=True)
    # the dated parents (outputs/<day>/) go too when this run was their only content
    for parent in out.parents:
        if parent.resolve() == root or root not in parent.resolve().parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def cli() -> None:
    global _SHOW_TRACEBACK
    verbose = errors.VERBOSE_FLAG in sys.argv[1:]
    if verbose:
        sys.argv.remove(errors.VERBOSE_FLAG)
    user_full = _SHOW_TRACEBACK = verbose or errors.wants_traceback()
    # Hydra saves the overrides and the composed config in the run folder before the run
    # starts: passwords leave them here, for the environment the run reads them back from.
    try:
        sys.argv[1:] = stores.mask_overrides(sys.argv[1:])
    except errors.ConfigError as exc:
        errors.report(exc)
        sys.exit(errors.EXIT_CODE)
    # Hydra prints its own report of any exception unless this is set; set, the exception
    # reaches this function, which decides between one message and Hydra's report.
    os.environ[errors.FULL_ERROR_ENV] = "1"
    register_sweeper()
    try:
        main()
    except (KeyboardInterrupt, SystemExit) as exc:
        _exit_after_stop(exc)
    except Exception as exc:
        if user_full:
            raise
        if errors.is_known(exc):
            errors.report(exc)
            sys.exit(errors.EXIT_CODE)
        _print_job_traceback(exc)
        sys.exit(errors.EXIT_CODE)


def _exit_after_stop(exc: KeyboardInterrupt | SystemExit) -> None:
    """Exit status 128 + signal after a stop by Ctrl-C or SIGTERM; any other exit as it came.

    Lightning ends a fit cut by Ctrl-C with ``sys.exit(1)`` and one cut by SIGTERM with an
    exit code of None (0): read by SLURM or ``timeout``, both would misreport the stop.
    """
    # Only a run that started can have recorded a signal; importing the module otherwise
    # would load Lightning on the way out of a refused config.
    interrupt = sys.modules.get("bench.interrupt")
    signum = interrupt.received() if interrupt is not None else None
    if interrupt is None or signum is None:
        if isinstance(exc, KeyboardInterrupt):
            sys.exit(130)
        raise exc
    sys.stderr.write(f"stopped by {interrupt.signal_name(signum)}; finished work is recorded "
                     "(an unfinished MLflow run is closed KILLED)\n")
    sys.exit(interrupt.exit_code())


def _print_job_traceback(exc: BaseException) -> None:
    """The traceback from the job function down, as Hydra prints it, without Hydra's frames."""
    import traceback

    tb = exc.__traceback__
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_name == "run_job":
            tb = walk.tb_next
            break
        walk = walk.tb_next
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.write(f"\nAdd {errors.VERBOSE_FLAG} or set {errors.FULL_ERROR_ENV}=1 for a "
                     "complete stack trace.\n")

if __name__ == "__main__":
    cli()
