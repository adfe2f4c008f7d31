"""``python -m bench``: the Hydra entry point (single runs and ``-m`` sweeps)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Hydra's logging config already writes to the console and the job's log file; drop
    # Lightning's own console handler so each message appears once.
    from bench.console import print_summary
    from bench.train import run

    for name in ("lightning", "lightning.pytorch"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True

    callbacks, tags, parent = [], {}, None
    if cfg.get("trial") is not None:
        from bench.sweep.job import trial_hooks

        callbacks, tags, parent = trial_hooks(cfg)
    result = run(cfg, callbacks=callbacks, tags=tags, parent_run_id=parent)
    print_summary(cfg, result)
    return result.objective


if __name__ == "__main__":
    main()
