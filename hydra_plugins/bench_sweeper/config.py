"""``hydra/sweeper=bench_optuna``: the sweeper's settings, registered in Hydra's ConfigStore.

The fields and defaults are :class:`bench.sweep.settings.SweepSettings`'s (the frozen object
the sweep passes around), plus Hydra's ``_target_``; this schema is mutable so that the
command line can override it. Kept free of heavy imports: Hydra imports every module under
``hydra_plugins`` at start-up. No ``from __future__ import annotations`` here: Hydra executes
this module without registering it in ``sys.modules``, where dataclasses would look up
string annotations.
"""

from dataclasses import field, make_dataclass

from hydra.core.config_store import ConfigStore

from bench.sweep.settings import hydra_schema_fields

BenchOptunaSweeperConf = make_dataclass(
    "BenchOptunaSweeperConf",
    [("_target_", str, field(default="hydra_plugins.bench_sweeper.sweeper.BenchOptunaSweeper")),
     *hydra_schema_fields()],
)

ConfigStore.instance().store(
    group="hydra/sweeper", name="bench_optuna", node=BenchOptunaSweeperConf, provider="bench"
)
