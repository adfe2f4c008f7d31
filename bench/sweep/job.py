"""The trial side of a sweep: what a training job needs to take part in an Optuna study.

A job learns that it is a trial from ``cfg.trial`` (study name, masked storage URL, trial
number, pruner, MLflow parent run), set by the sweep worker. ``trial_hooks(cfg)`` turns
that into Lightning callbacks, MLflow tags and the parent run id for ``bench.train.run``:

    callbacks, tags, parent_run_id = trial_hooks(cfg)
    bench.train.run(cfg, callbacks=callbacks, tags=tags, parent_run_id=parent_run_id)

The pruning callback reports ``val/<metric>`` after every validation epoch to the shared
storage and raises ``optuna.TrialPruned`` when the pruner says so; ``bench.train.run``
records that run as pruned and re-raises. Inside a sweep worker the live trial object is
reused; a job started anywhere else (by hand, by another launcher) reconnects to the
storage with the trial number, which is why the identity travels in the config and not as
a Python object.
"""

from __future__ import annotations

from typing import Any

import optuna
from lightning.pytorch import LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf
from optuna_integration import PyTorchLightningPruningCallback

from bench.sweep import interrupt
from bench.sweep import parent as parent_mod
from bench.sweep.storage import open_storage
from bench.sweep.strategy import make_pruner

# (study name, trial number) -> the live Trial of the worker in this process.
_ACTIVE: dict[tuple[str, int], optuna.Trial] = {}


class PruningCallback(PyTorchLightningPruningCallback):
    """optuna-integration's callback, plus the link from the trial to its MLflow run.

    The MLflow run id is stored on the trial as soon as training starts, so the study (and
    the report built from it) can point at every trial's curves, including pruned ones.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        run_id = getattr(trainer.logger, "run_id", None)
        if run_id:
            self._trial.set_user_attr(parent_mod.RUN_ID_ATTR, run_id)


def trial_identity(cfg: DictConfig) -> dict[str, Any] | None:
    t = cfg.get("trial")
    if t is None:
        return None
    return OmegaConf.to_container(t, resolve=True)


def _load_trial(t: dict[str, Any]) -> optuna.Trial:
    storage = open_storage(t["storage"])
    study = optuna.load_study(
        study_name=t["study_name"], storage=storage,
        pruner=make_pruner(t.get("pruner"), t.get("max_epochs")),
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, t["number"])
    frozen = storage.get_trial(trial_id)
    if frozen.state != optuna.trial.TrialState.RUNNING:
        raise RuntimeError(
            f"trial {t['number']} of study {t['study_name']!r} is {frozen.state.name}, not "
            "RUNNING: a trial's job can only run while its sweep worker holds the trial"
        )
    return optuna.Trial(study, trial_id)


def trial_hooks(cfg: DictConfig) -> tuple[list, dict[str, str], str | None]:
    """Callbacks, MLflow tags and parent run id for a job; empty for a plain run."""
    t = trial_identity(cfg)
    if t is None:
        return [], {}, None
    trial = _ACTIVE.get((t["study_name"], int(t["number"])))
    if trial is None:
        trial = _load_trial(t)
    # Reported every epoch even with pruner "none": the dashboard's curves and the
    # intermediate-values plot come from these reports.
    callbacks = [PruningCallback(trial, monitor=f"val/{cfg.dataset.metric}"),
                 interrupt.SafePointInterrupt()]
    tags = {
        parent_mod.TAG_STUDY: t["study_name"],
        parent_mod.TAG_TRIAL: str(t["number"]),
        parent_mod.TAG_ROLE: "trial",
    }
    if t.get("space"):
        tags["optuna_space"] = str(t["space"])
    if t.get("retry_of") is not None:
        tags[parent_mod.TAG_RETRY_OF] = str(t["retry_of"])
    return callbacks, tags, t.get("parent_run_id")


def run_trial(cfg: DictConfig):
    """What ``python -m bench`` does for one job, without Hydra's per-job machinery."""
    from bench.train import run

    callbacks, tags, parent_run_id = trial_hooks(cfg)
    return run(cfg, callbacks=callbacks, tags=tags, parent_run_id=parent_run_id)
