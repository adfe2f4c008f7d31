"""Search spaces and the sweeper's configuration: every space applies to the configs it is
meant for, sweep syntax on the command line adds dimensions, mistakes fail early."""

from __future__ import annotations

import json
import os

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import stores
from bench.data.base import ConfigError
from bench.stores import StoreAddress
from bench.sweep import space as space_mod
from bench.sweep.strategy import PRUNERS, SAMPLERS, make_pruner, make_sampler, worker_seed

CONF = str(space_mod.SWEEPS_DIR.parent / "conf")


def cfg_for(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=["dataset=synthetic", *overrides])


@pytest.mark.parametrize("space,model,topology", [
    ("recurrent", "gru", "single"), ("recurrent", "lstm", "stacked"),
    ("recurrent", "rnn", "bidirectional"), ("recurrent_budget", "gru", "stacked_bidirectional"),
    ("mlp", "mlp", None),
])
def test_space_applies_to_its_family(space, model, topology):
    overrides = [f"model={model}"] + ([f"model.topology={topology}"] if topology else [])
    cfg = cfg_for(*overrides)
    sp = space_mod.load(space)
    sp.check(cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    values = sp.suggest(trial, cfg)
    out = space_mod.apply(cfg, values)
    for key, value in values.items():
        assert OmegaConf.select(out, key) == value
    # `num_layers` only for stacked topologies, so the sampler never tunes an ignored knob.
    assert ("model.num_layers" in values) == bool(topology and topology.startswith("stacked"))
    if space == "mlp":
        assert isinstance(OmegaConf.select(out, "model.hidden_sizes")[0], int)
        assert isinstance(trial.params["model.hidden_sizes"], str)  # JSON in Optuna


def test_every_family_tunes_the_required_knobs():
    for name in ("recurrent", "mlp"):
        keys = {p.name for p in space_mod.load(name).params}
        assert {"optim.lr", "model.dropout", "batch_size"} <= keys
        lr = next(p for p in space_mod.load(name).params if p.name == "optim.lr")
        assert lr.log
    rec = {p.name for p in space_mod.load("recurrent").params}
    assert {"model.hidden_size", "model.num_layers"} <= rec


def test_every_family_gets_the_training_knobs_alike():
    """Clipping, a schedule and weight decay with the same choices for every family; the
    sequence summary for the recurrent ones."""
    knobs = ("optim.weight_decay", "optim.schedule", "trainer.gradient_clip_val")
    spaces = {name: {p.name: p for p in space_mod.load(name).params}
              for name in ("recurrent", "recurrent_small", "mlp", "mlp_small")}
    for key in knobs:
        assert len({spaces[name][key].choices for name in spaces}) == 1, key
    assert spaces["recurrent_small"]["model.summary"].choices == ("last", "mean", "max")
    assert "model.summary" not in spaces["mlp_small"]


def test_space_errors_name_the_problem(tmp_path):
    cfg = cfg_for("model=mlp")
    with pytest.raises(ConfigError, match="model.cell in"):
        space_mod.load("recurrent").check(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  optim.nope: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(ConfigError, match="optim.nope"):
        space_mod.load(bad).check(cfg_for())
    bad.write_text("params:\n  optim.lr: {type: float, low: 0, high: 1, log: true}\n")
    with pytest.raises(ConfigError, match="log"):
        space_mod.load(bad)
    with pytest.raises(ConfigError, match="recurrent"):
        space_mod.load("no_such_space")


def test_command_line_sweep_syntax_adds_dimensions():
    fixed, extra = space_mod.from_sweep_overrides([
        "dataset=synthetic", "optim.lr=tag(log,interval(1e-4,1e-1))",
        "model.hidden_size=choice(8,16)", "model.num_layers=range(2,4)",
    ])
    assert fixed == ["dataset=synthetic"]
    by_name = {p.name: p for p in extra}
    assert by_name["optim.lr"].log and by_name["optim.lr"].type == "float"
    assert by_name["model.hidden_size"].choices == (8, 16)
    assert by_name["model.num_layers"].choices == (2, 3)
    merged = space_mod.load("recurrent").with_overrides(extra)
    assert next(p for p in merged.params if p.name == "model.hidden_size").choices == (8, 16)
    # The same dimensions as they travel in the settings ({key: sweep expression}).
    fixed, sweeps = space_mod.split_overrides(["dataset=synthetic",
                                               "model.hidden_size=choice(8,16)"])
    assert fixed == ["dataset=synthetic"] and sweeps == {"model.hidden_size": "choice(8,16)"}
    loaded = space_mod.load("recurrent", sweeps)
    assert next(p for p in loaded.params if p.name == "model.hidden_size").choices == (8, 16)
    with pytest.raises(ConfigError, match="not sweep expressions"):
        space_mod.load("recurrent", {"optim.lr": "0.1"})


# Optuna flags its QMC sampler as experimental on every construction; a user who picks it sees
# that, the test of the name table need not.
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_samplers_and_pruners_by_name():
    for name in SAMPLERS:
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                with pytest.raises(ConfigError, match="cmaes"):
                    make_sampler(name, 0)
                continue
        assert isinstance(make_sampler(name, 0), optuna.samplers.BaseSampler)
    for name in PRUNERS:
        spec = {"name": name, "lower": 0.1} if name == "threshold" else name
        assert isinstance(make_pruner(spec, max_epochs=10), optuna.pruners.BasePruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match="hyperband"):
        make_pruner("nope")
    # Distinct seeds per worker and per resume; the plain seed for a fresh single worker.
    assert worker_seed(7, 0) == 7
    assert len({worker_seed(7, n) for n in range(6)}) == 6


def test_storage_password_is_masked_and_restored(monkeypatch, tmp_path):
    monkeypatch.delenv(stores.STORAGE_ENV, raising=False)
    url = "postgresql+psycopg2://bench:t0p-s3cret@db.example:5432/optuna"
    masked = str(StoreAddress.optuna(url))
    assert "t0p-s3cret" not in masked and "bench:***@" in masked
    assert StoreAddress.optuna(masked).connect() == url
    assert "t0p-s3cret" not in stores.mask(url)
    monkeypatch.chdir(tmp_path)
    default = str(StoreAddress.optuna(None))
    assert default == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    assert str(StoreAddress.optuna("sqlite:///rel/o.db")) == (
        f"sqlite:///{tmp_path.resolve()}/rel/o.db")


def test_sweep_config_selects_the_plugin_and_slurm_script_is_generated(tmp_path, monkeypatch):
    """`+sweep=default` picks the sweeper; `hydra/launcher=bench_slurm` composes and
    submitit writes its sbatch script (no SLURM needed)."""
    import submitit
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from hydra_plugins.bench_sweeper.sweeper import BenchOptunaSweeper

    assert BenchOptunaSweeper in Plugins.instance().discover(Sweeper)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "dataset=synthetic", "+sweep=default", "hydra/launcher=bench_slurm",
            "hydra.launcher.partition=gpu", "hydra.sweeper.n_jobs=4",
            "hydra.sweep.dir=" + str(tmp_path / "multirun"),
        ])
    assert cfg.hydra.sweeper._target_.endswith("BenchOptunaSweeper")
    assert cfg.hydra.sweeper.space == "recurrent" and cfg.hydra.sweeper.n_jobs == 4
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    # What the submitit launcher does with these settings, minus the submission.
    init_keys = {"submitit_folder", "max_num_timeout", "_target_"}
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {(k if k in base else f"slurm_{k}"): v for k, v in launcher.items()
              if k not in init_keys}
    # submitit only checks that an `srun` is on PATH before building the script; this
    # machine has no SLURM, so an inert one stands in (nothing is submitted or run).
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=str(tmp_path / "submitit"), cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m bench.sweep.worker", "u1")
    assert "#SBATCH --partition=gpu" in script
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --cpus-per-task=8" in script
    assert "export OMP_NUM_THREADS=8" in script
    assert "#SBATCH --signal=USR2@120" in script or "--signal" in script


def test_storage_json_settings_have_no_password(monkeypatch):
    from bench.sweep.settings import SweepSettings

    url = str(StoreAddress.optuna("postgresql+psycopg2://u:hunter2@h/db"))
    settings = SweepSettings(study_name="s", storage=url, space="recurrent", n_trials=1)
    assert "hunter2" not in settings.to_json()
    assert json.loads(settings.to_json())["storage"].endswith("u:***@h/db")
    assert SweepSettings.from_json(settings.to_json()) == settings


def test_every_worker_process_of_a_study_draws_its_own_stream(tmp_path):
    """Incarnations are counted in the storage: a replacement worker or a second sweep process
    on the same study never gets its predecessor's sampler seed."""
    import optuna

    from bench.sweep.storage import claim_incarnation, open_storage

    storage = open_storage(StoreAddress.optuna(f"sqlite:///{tmp_path / 'o.db'}"))
    optuna.create_study(study_name="s", storage=storage)
    claims = [claim_incarnation(storage, "s") for _ in range(4)]
    assert claims == [0, 1, 2, 3]
    again = open_storage(StoreAddress.optuna(f"sqlite:///{tmp_path / 'o.db'}"))  # another process
    assert claim_incarnation(again, "s") == 4
    assert len({worker_seed(0, n) for n in [*claims, 4]}) == 5


def test_a_misspelled_type_is_named_as_the_typo(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("family: recurrent\ncells: [gru]\nparams:\n"
                    "  optim.lr: {tpye: float, low: 0.001, high: 0.1}\n")
    with pytest.raises(ConfigError) as err:
        space_mod.load(path)
    assert str(err.value) == (f"params.optim.lr.tpye: unknown key in {path}; "
                              "did you mean 'params.optim.lr.type'?")
