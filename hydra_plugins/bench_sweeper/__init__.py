"""Hydra sweeper ``bench_optuna``: Optuna ask/tell with pruning and asynchronous workers.

Hydra finds it by scanning the ``hydra_plugins`` namespace package (this directory has an
``__init__.py``, ``hydra_plugins/`` itself must not) and registers ``config.py``'s entry
``hydra/sweeper=bench_optuna``. The work is done by :mod:`bench.sweep`.
"""
