"""Resuming a study on a machine that lacks its stores, from the committed tidy record.

A study that outlasts one sitting is carried between machines by its tidy record
(``reports/<study>/record/``), not by its MLflow and Optuna stores, which are local files.
The record holds every finished final run and every tuning trial with its parameters, search
distributions, objective and per-epoch objective, so the study runner can treat it as a third
store: a final run the record holds is done, and a tuning cell whose Optuna study is missing
locally is rebuilt from the record's trials before tuning goes on. Rebuilding (rather than
re-tuning) matters for a cell whose retrains were cut off: the seeds still to run must retrain
the same best configuration as the seeds already recorded.

The report merges the same way: runs read from the stores win, runs only in the committed
record are kept (:func:`bench.results.record.merge`), so the record grows over invocations and
its session rows say how many there were.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from bench.errors import StudyError
from bench.results import record as record_mod
from bench.tracking import RUN_ID_ATTR

log = logging.getLogger("bench.study")

RUN_KINDS = record_mod.RUN_KINDS
# States a restored trial keeps; any other (a trial that was RUNNING or WAITING when its
# session ended) is restored as FAIL so that trial numbers, and with them the record's keys,
# stay those of the original study.
KEPT_STATES = ("COMPLETE", "PRUNED", "FAIL")
TUNED_EPOCHS_METRIC = "metric:tuned_epochs"   # bench.fold_train.TUNED_EPOCHS_TAG, as logged


@dataclass(frozen=True)
class Committed:
    """The committed record of one study, read once when the study starts."""

    path: Path
    frame: pd.DataFrame

    @classmethod
    def load(cls, path: str | Path, study: str) -> Committed | None:
        """The record at ``path`` (None when there is none); a record of another study, or a
        file that is not a record, stops the study before any work."""
        p = Path(path)
        if not (p.is_file() or p.is_dir()):
            return None
        try:
            df = record_mod.read(p)
        except (LookupError, ValueError) as exc:
            raise StudyError(f"{p}: cannot resume from it ({exc}); pass --no-record to ignore "
                             "it or --record PATH for another file") from exc
        names = sorted(set(df["study"].dropna()))
        if names and names != [study]:
            raise StudyError(f"{p}: field 'study' is {names}, expected [{study!r}]; it is the "
                             "record of another study (pass --record PATH or --no-record)")
        return cls(p, df)

    def without(self, run_ids: set[str]) -> Committed:
        """This record less the runs ``run_ids`` (withdrawn: deleted in MLflow)."""
        if not run_ids:
            return self
        return Committed(self.path, record_mod.withdraw(self.frame, run_ids))

    # -- final runs ---------------------------------------------------------------------------

    def finished_seeds(self, *, phase: str, dataset: str, arch: str,
                       tuning_seed: int | None) -> set[int]:
        """Seeds of the cell whose final run the record holds FINISHED and unpruned."""
        df = self.frame
        m = ((df["kind"] == phase) & (df["dataset"] == dataset) & (df["arch"] == arch)
             & (df["status"] == "FINISHED") & ~df["pruned"].astype(bool))
        if tuning_seed is not None:
            m &= pd.to_numeric(df["tuning_seed"], errors="coerce") == tuning_seed
        return {int(s) for s in pd.to_numeric(df.loc[m, "seed"], errors="coerce").dropna()}

    @property
    def n_finished(self) -> int:
        df = self.frame
        return int((df["kind"].isin(RUN_KINDS) & (df["status"] == "FINISHED")).sum())

    @property
    def n_sessions(self) -> int:
        return int((self.frame["kind"] == "session").sum())

    # -- tuning -------------------------------------------------------------------------------

    def trials(self, optuna_study: str) -> pd.DataFrame:
        df = self.frame
        t = df[(df["kind"] == "trial") & (df["optuna_study"] == optuna_study)]
        return t.sort_values("trial", kind="stable")

    def restore_study(self, optuna_study: str, storage: str, direction: str) -> int:
        """Recreates ``optuna_study`` in ``storage`` from the record's trials when the storage
        lacks it; returns the number of trials restored (0: nothing to restore, or the study
        exists already and is left alone)."""
        import optuna

        rows = self.trials(optuna_study)
        if rows.empty:
            return 0
        try:
            optuna.load_study(study_name=optuna_study, storage=storage)
            return 0
        except KeyError:
            pass
        trials = [_frozen(r, self.path) for r in rows.to_dict("records")]
        study = optuna.create_study(study_name=optuna_study, storage=storage,
                                    direction=_direction(direction), load_if_exists=True)
        if study.trials:   # another worker restored it meanwhile
            return 0
        study.set_user_attr("restored_from", str(self.path))
        study.add_trials(trials)
        log.info("  restored %s from %s: %d trials", optuna_study, self.path, len(trials))
        return len(trials)


def _direction(direction: str) -> Literal["minimize", "maximize"]:
    if direction == "minimize":
        return "minimize"
    if direction == "maximize":
        return "maximize"
    raise StudyError(f"direction {direction!r}; expected 'minimize' or 'maximize'")


def _frozen(row: dict, path: Path):
    """One record row as an Optuna trial, with the distributions it was drawn from."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState

    number = row["trial"]
    try:
        params = json.loads(row["trial_params"])
        dists = {k: json_to_distribution(v)
                 for k, v in json.loads(row["distributions"]).items()}
    except (TypeError, ValueError, KeyError) as exc:
        raise StudyError(f"{path}: trial {number} of {row['optuna_study']}: fields "
                         "'trial_params' and 'distributions' must be the JSON the report wrote; "
                         f"{exc}") from exc
    state = str(row["status"])
    state = state if state in KEPT_STATES else "FAIL"
    value = row["value"]
    value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    curve = _curve(row)
    if state == "COMPLETE" and value is None:
        state = "FAIL"
    attrs: dict[str, Any] = {"restored": True}
    run_id = row["run_id"]
    if isinstance(run_id, str) and "#" not in run_id:
        attrs[RUN_ID_ATTR] = run_id
    tuned = row.get(TUNED_EPOCHS_METRIC)
    if tuned is not None and isinstance(tuned, int | float) and math.isfinite(tuned):
        # a fold-tuned trial's epochs for the final models: the record carries them, so a
        # resume without the MLflow run (a fresh clone, a re-run elsewhere) trains as tuned
        attrs["tuned_epochs"] = int(tuned)
    return optuna.trial.create_trial(
        state=TrialState[state], value=value if state != "FAIL" else None,
        params={k: params[k] for k in dists if k in params},
        distributions={k: d for k, d in dists.items() if k in params},
        intermediate_values=curve, user_attrs=attrs,
    )


def _curve(row: dict) -> dict[int, float]:
    """The per-epoch objective (Optuna steps are epochs, 0-based and contiguous)."""
    raw = row.get("curve:objective")
    if not isinstance(raw, str):
        return {}
    return {i: float(v) for i, v in enumerate(json.loads(raw))
            if v is not None and not math.isnan(float(v))}
