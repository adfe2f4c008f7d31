"""A sweep's settings and search spaces are refused before any work when a name is unknown
or a value is not what the sweep needs; the message names the setting or the space file and
parameter, and what was expected."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir

import bench.sweep
from bench.errors import ConfigError
from bench.sweep import space as space_mod
from bench.sweep.settings import SweepSettings

CONF = str(space_mod.SWEEPS_DIR.parent / "conf")


def sweeper_config(*overrides: str):
    """``hydra.sweeper`` as Hydra composes it for ``+sweep=default`` and these overrides."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["dataset=synthetic", "+sweep=default", *overrides])
    return cfg.hydra.sweeper


def test_composed_sweeper_settings_pass_and_every_setting_may_be_written():
    settings = SweepSettings.from_config(sweeper_config("hydra.sweeper.n_trials=3"))
    assert settings.n_trials == 3 and settings.pruner["name"] == "median"
    # Every user setting, current or added later, is accepted at its default.
    defaults = {f.name: getattr(SweepSettings(), f.name)
                for f in dataclasses.fields(SweepSettings) if not f.metadata.get("prepared")}
    assert SweepSettings.from_config(defaults) == SweepSettings()


def test_unknown_settings_are_refused_with_the_closest_name():
    with pytest.raises(ConfigError) as err:
        SweepSettings.from_config({"space": "recurrent", "n_trails": 2})
    assert str(err.value) == ("hydra.sweeper.n_trails: unknown key; "
                              "did you mean 'hydra.sweeper.n_trials'?")
    # Filled in by the sweep itself, never by the user.
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.parent_run_id: unknown key"):
        SweepSettings.from_config({"parent_run_id": "abc"})


@pytest.mark.parametrize("key,value,expected", [
    ("n_trials", 0, "an integer >= 1"),
    ("n_trials", "20", "an integer >= 1"),
    ("n_trials", True, "an integer >= 1"),
    ("n_jobs", 0, "an integer >= 1"),
    ("max_retry", -1, "an integer >= 0"),
    ("heartbeat_interval", 0, "a number > 0"),
    ("heartbeat_interval", -5, "a number > 0"),
    ("poll_interval", 0.0, "a number > 0"),
    ("sampler", "tpee", "one of ['tpe', 'random', 'cmaes', 'qmc', 'gp']"),
    ("sampler_kwargs", [1], "a mapping of names to values"),
    ("pruner", 3, "a pruner name or a mapping with 'name'"),
    ("devices", "gpu0", "null, 'auto', 'shared'"),
    ("params", {"optim.lr": ""}, "a non-empty string"),
])
def test_bad_values_name_the_setting(key, value, expected):
    with pytest.raises(ConfigError) as err:
        SweepSettings.from_config({key: value})
    assert str(err.value).startswith(f"hydra.sweeper.{key}")
    assert f"expected {expected}" in str(err.value)


def test_pruner_options_are_those_of_the_optuna_class():
    options = sorted(n for n in inspect.signature(optuna.pruners.SuccessiveHalvingPruner)
                     .parameters)
    with pytest.raises(ConfigError) as err:
        SweepSettings.from_config({"pruner": {"name": "successive_halving", "min_resourse": 1}})
    assert str(err.value) == ("hydra.sweeper.pruner: unknown option 'min_resourse' for "
                              f"successive_halving; expected one of {options}")
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pruner: 'medain' is not allowed; "
                                          r"expected one of \['median'"):
        SweepSettings.from_config({"pruner": "medain"})
    with pytest.raises(ConfigError, match=r"pruner: \{'min_resource': 2\} has no 'name'"):
        SweepSettings.from_config({"pruner": {"min_resource": 2}})
    # Switching pruning off on the command line leaves the replaced pruner's options behind.
    off = SweepSettings.from_config(sweeper_config("hydra.sweeper.pruner.name=none"))
    assert off.pruner["name"] == "none" and "n_startup_trials" in off.pruner
    with pytest.raises(ConfigError, match=r"unknown option 'n_startup_trials' for "
                                          "successive_halving"):
        SweepSettings.from_config(sweeper_config("hydra.sweeper.pruner.name=successive_halving"))
    # Option names are right but Optuna refuses the value.
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pruner: percentile refuses .*100"):
        SweepSettings.from_config({"pruner": {"name": "percentile", "percentile": 150.0}})
    with pytest.raises(ConfigError, match=r"option n_startup_trials='5' of median .*expected int"):
        SweepSettings.from_config({"pruner": {"name": "median", "n_startup_trials": "5"}})
    # From the command line, through Hydra.
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pruner: unknown option "
                                          r"'n_startup' for median"):
        SweepSettings.from_config(sweeper_config("+hydra.sweeper.pruner.n_startup=3"))


def test_sampler_options_are_those_of_the_optuna_class():
    options = sorted(n for n in inspect.signature(optuna.samplers.GPSampler).parameters
                     if n != "seed")
    with pytest.raises(ConfigError) as err:
        SweepSettings.from_config({"sampler": "gp", "sampler_kwargs": {"n_startup": 3}})
    assert str(err.value) == ("hydra.sweeper.sampler_kwargs: unknown option 'n_startup' for gp; "
                              f"expected one of {options}")
    with pytest.raises(ConfigError, match=r"option 'seed' of tpe is set by the 'seed' setting"):
        SweepSettings.from_config({"sampler_kwargs": {"seed": 1}})
    with pytest.raises(ConfigError, match=r"random takes no options"):
        SweepSettings.from_config({"sampler": "random", "sampler_kwargs": {"n_startup_trials": 1}})
    ok = SweepSettings.from_config({"sampler": "tpe", "sampler_kwargs": {"n_startup_trials": 2}})
    assert ok.sampler_kwargs == {"n_startup_trials": 2}


def test_tune_keywords_are_checked_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(ConfigError) as err:
        bench.sweep.tune(["dataset=synthetic", "trainer=smoke"], "recurrent",
                         storage=storage, n_trails=2)
    assert str(err.value) == ("n_trails: unknown key in the keywords of bench.sweep.tune; "
                              "did you mean 'n_trials'?")
    with pytest.raises(ConfigError, match=r"^heartbeat_interval: 0 .*expected a number > 0"):
        bench.sweep.tune(["dataset=synthetic"], "recurrent", storage=storage,
                         heartbeat_interval=0)
    assert list(tmp_path.iterdir()) == []  # no study, no MLflow store


# -- search spaces -----------------------------------------------------------------------------


@pytest.mark.parametrize("param,message", [
    ("{type: float, low: '1e-4', high: 0.1, log: true}",
     r"params\.optim\.lr\.low: '1e-4' is not allowed in .*; expected a number$"),
    ("{type: float, low: -1.0e-4, high: 0.1, log: true}",
     r"params\.optim\.lr\.low: -0\.0001 is not allowed with log: true .*expected low > 0$"),
    ("{type: float, low: 0.0, high: 0.1, log: true}", r"params\.optim\.lr\.low: 0\.0 .*low > 0"),
    ("{type: float, low: 0.5, high: 0.1}",
     r"params\.optim\.lr: low=0\.5 is not below high=0\.1 .*expected low < high$"),
    ("{type: float, low: 0.1}", r"params\.optim\.lr\.high: missing .*expected a number"),
    ("{type: float, low: 0.1, hihg: 0.5}",
     r"params\.optim\.lr\.hihg: unknown key .*did you mean 'params\.optim\.lr\.high'\?$"),
    ("{type: float, low: 0.1, high: 0.5, log: true, step: 0.1}",
     r"params\.optim\.lr\.step: step cannot be combined with log: true"),
    ("{type: int, low: 1.5, high: 3}", r"params\.optim\.lr\.low: 1\.5 .*expected an integer$"),
    ("{type: int, low: 0, high: 3, log: true}", r"params\.optim\.lr\.low: 0 .*expected low >= 1"),
    ("{type: categorical, choices: 32}",
     r"params\.optim\.lr\.choices: 32 .*expected a non-empty list of choices$"),
    ("{type: categorical, choices: [1, 1]}", r"params\.optim\.lr\.choices: .*without repeats"),
    ("{type: categorical}", r"params\.optim\.lr\.choices: missing"),
    ("{type: categorical, choices: [1, 2], when: 3}",
     r"params\.optim\.lr\.when: 3 .*expected a mapping of config keys"),
    ("{type: floot, low: 0.1, high: 0.5}",
     r"params\.optim\.lr\.type: 'floot' .*expected one of \['float', 'int', 'categorical'\]"),
    ("0.1", r"params\.optim\.lr: 0\.1 is not allowed .*expected a mapping with 'type'"),
])
def test_malformed_space_parameters_name_the_file_and_parameter(tmp_path, param, message):
    path = tmp_path / "bad_space.yaml"
    path.write_text(f"family: recurrent\nparams:\n  optim.lr: {param}\n")
    with pytest.raises(ConfigError, match=message) as err:
        space_mod.load(path)
    assert str(path) in str(err.value)


def test_malformed_space_files_are_refused(tmp_path):
    path = tmp_path / "bad_space.yaml"
    path.write_text("parms: {}\nparams:\n  optim.lr: {type: float, low: 0.1, high: 0.5}\n")
    with pytest.raises(ConfigError, match=r"^parms: unknown key .*did you mean 'params'\?$"):
        space_mod.load(path)
    path.write_text("cells: gru\nparams:\n  optim.lr: {type: float, low: 0.1, high: 0.5}\n")
    with pytest.raises(ConfigError, match=r"^cells: 'gru' .*expected a list"):
        space_mod.load(path)
    path.write_text("params: {}\n")
    with pytest.raises(ConfigError, match="non-empty 'params'"):
        space_mod.load(path)


def test_command_line_ranges_are_checked():
    with pytest.raises(ConfigError, match=r"^optim\.lr=tag\(log,interval\(0,1e-1\)\): 0\.0 is "
                                          r"not allowed with log: true; expected low > 0$"):
        space_mod.from_sweep_overrides(["optim.lr=tag(log,interval(0,1e-1))"])
    with pytest.raises(ConfigError, match="low=0.5 is not below high=0.1"):
        space_mod.load("recurrent", {"optim.lr": "interval(0.5,0.1)"})


def test_every_shipped_space_loads():
    shipped = [p for p in Path(space_mod.SWEEPS_DIR).glob("*.yaml")
               if not p.stem.startswith("study")]
    assert len(shipped) >= 5
    for path in shipped:
        assert space_mod.load(path.stem).params, path
