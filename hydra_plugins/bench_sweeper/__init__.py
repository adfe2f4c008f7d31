"""Hydra sweeper ``bench_optuna``: Optuna ask/tell with pruning and asynchronous workers.

Hydra finds it by scanning the ``hydra_plugins`` namespace package (this directory has an
``__init__.py``, ``hydra_plugins/`` itself must not) and registers ``config.py``'s entry
``hydra/sweeper=bench_optuna``. The work is done by :mod:`bench.sweep`.
"""


def register() -> None:
    """Make sure Hydra knows ``hydra/sweeper=bench_optuna`` however bench was installed.

    Hydra 1.3 finds plugins by listing the ``hydra_plugins`` namespace with ``pkgutil``.
    An editable install (``pip install -e .``, setuptools >= 64) exposes the project's
    ``hydra_plugins/bench_sweeper`` through an import hook that ``pkgutil`` cannot list, so
    outside the checkout (where the current directory is not the project) every sweep ended
    with "Could not find 'hydra/sweeper/bench_optuna'". The package is still importable, so
    when the scan missed it, it is imported (which stores its config) and registered through
    Hydra's public ``Plugins.register``. A wheel install, or a run from the checkout, finds
    it by the scan and this does nothing.
    """
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()
    if any(c.__name__ == "BenchOptunaSweeper" for c in plugins.discover(Sweeper)):
        return
    import hydra_plugins.bench_sweeper.config  # noqa: F401  stores hydra/sweeper=bench_optuna
    from hydra_plugins.bench_sweeper.sweeper import BenchOptunaSweeper

    plugins.register(BenchOptunaSweeper)
