"""Hyperparameter sweeps: Optuna ask/tell with pruning, asynchronous workers, shared studies.

Command line (the Hydra sweeper in ``hydra_plugins/bench_sweeper``)::

    python -m bench -m +experiment=jena_gru +sweep=default
    python -m bench -m dataset=synthetic trainer=smoke +sweep=default hydra.sweeper.n_jobs=2

Python (what the study runner calls)::

    study = bench.sweep.tune(
        ["dataset=mnist", "model=gru"],      # overrides, as on the command line; sweep
        "recurrent",                          # syntax (choice/interval) adds dimensions
        study_name="mnist-gru-single",        # None -> "<dataset>-<arch>-<space>"
        storage=None,                         # None -> sqlite file ./optuna.db; or postgresql://
        n_trials=20,                          # target of COMPLETE + PRUNED trials in the study
        n_jobs=1,                             # asynchronous worker processes
        sampler="tpe",                        # tpe | random | cmaes | qmc | gp (seeded)
        pruner="median",                      # median | percentile | successive_halving |
                                              # hyperband | threshold | none, or a dict
                                              # {"name": "median", "n_startup_trials": 3}
        seed=0,
        parent_tags={"study": "rnn-vs-gru"},  # extra tags on the MLflow parent run
    )

``n_trials`` is a target for the study, not for this call: re-running with the same study
name and storage resumes and only tops up (trials interrupted last time run first). Several
processes or machines given the same study name and storage share the work. Further
keyword options (``devices``, ``heartbeat_interval``, ``grace_period``, ``max_retry``,
``max_failures``, ``sampler_kwargs``, ``params``) are the fields of
:class:`bench.sweep.settings.SweepSettings`, the frozen settings every part of a sweep is
given (the command line fills it from ``hydra.sweeper.*``).

Returns the ``optuna.Study``; each trial carries user attributes ``mlflow_run_id``,
``epochs_trained``, ``wall_time_s``, ``n_params`` and its final val/test metrics, and the
study carries ``mlflow_parent_run_id``. Ctrl-C raises ``KeyboardInterrupt`` after the
running trials were closed and queued again.

A worker hands each trial straight to :func:`bench.train.run`, with the trial's pruning
callback, MLflow tags and parent run as arguments (:mod:`bench.sweep.worker`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_sweep", "tune"]


# Imported on call: ``import bench.sweep`` stays cheap for the Hydra plugin's schema.
def tune(*args: Any, **kwargs: Any):
    from bench.sweep import driver

    return driver.tune(*args, **kwargs)


def run_sweep(*args: Any, **kwargs: Any):
    from bench.sweep import driver

    return driver.run_sweep(*args, **kwargs)


tune.__doc__ = __doc__
