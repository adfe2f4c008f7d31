"""Executes a study's plan, step by step, each step first asking the stores whether it is done."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from omegaconf import OmegaConf

from bench import tracking
from bench.errors import StudyError
from bench.stores import mask
from bench.study.plan import Cell, Study, best_values, final_config
from bench.study.resume import Committed
from bench.tracking import TAGS
from bench.vocab import (
    DETERMINISTIC_CELLS,
    FINISHED_TRIAL_STATES,
    count_finished,
)

log = logging.getLogger("bench.study")

SESSION_EXPERIMENT = "bench-studies"



class Runner:
    """Executes a study's plan; each step first asks the stores whether it is already done."""

    def __init__(self, study: Study, *, dry_run: bool = False, echo=print,
                 committed: Committed | None = None):
        self.study = study
        self.dry_run = dry_run
        self.echo = echo
        self.store = study.tracking_store
        self.client = tracking.client_for(self.store)
        if committed is not None:   # runs deleted in MLflow are withdrawn: trained again
            from bench.results.reader import withdrawn

            committed = committed.without(withdrawn(self.client, study.name))
        self.committed = committed

    # -- stores -------------------------------------------------------------------------------

    def finished_runs(self, cell: Cell) -> dict[int, str]:
        """seed -> run id of the FINISHED, unpruned final runs of one cell."""
        s = self.study
        filt = (
            f"tags.{TAGS['study']} = '{s.name}' and tags.{TAGS['phase']} = '{cell.phase}' and "
            f"tags.{TAGS['study_dataset']} = '{cell.dataset}' and tags.{TAGS['arch']} = '{cell.arch}' "
            "and attributes.status = 'FINISHED'"
        )
        exps = [e.experiment_id for e in self.client.search_experiments()]
        out: dict[int, str] = {}
        if not exps:
            return out
        for r in self.client.search_runs(exps, filter_string=filt, max_results=5000):
            if r.data.tags.get("pruned") == "true":
                continue
            if cell.space is not None and r.data.tags.get(
                    TAGS["tuning_seed"], str(self.study.tuning_seeds(cell.dataset)[0])
            ) != str(cell.tuning_seed):
                continue   # a retrain of another tuning run (untagged: the primary seed's)
            try:
                out.setdefault(int(r.data.tags.get(TAGS["seed"], "")), r.info.run_id)
            except ValueError:
                continue
        if self.committed is not None:
            for seed in self.committed.finished_seeds(
                    phase=cell.phase, dataset=cell.dataset, arch=cell.arch,
                    tuning_seed=cell.tuning_seed if cell.space is not None else None):
                out.setdefault(seed, "record")
        return out

    def finished_trials(self, cell: Cell) -> int:
        import optuna

        path = self.study.storage.sqlite_file
        if path is not None and not path.exists():
            return 0   # do not create the file just to look (a dry run must leave no trace)
        try:
            st = optuna.load_study(study_name=cell.optuna_study, storage=self.study.storage.connect())
        except KeyError:
            return 0
        return count_finished(t.state for t in st.get_trials(deepcopy=False))

    # -- steps --------------------------------------------------------------------------------

    def tune_cell(self, cell: Cell):
        import optuna

        t = self.study.definition.tuning
        n_trials = int(t.n_trials)
        if self.committed is not None and not self.dry_run:
            direction = str(final_config(cell, self.study.seeds[0]).dataset.direction)
            self.committed.restore_study(cell.optuna_study, self.study.storage.connect(), direction)
        done = self.finished_trials(cell)
        if done >= n_trials:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: done ({done}/{n_trials} trials)")
        elif self.dry_run and self.committed is not None and self._recorded_trials(cell):
            self.echo(f"  tune {cell.dataset}/{cell.arch}: {self._recorded_trials(cell)} trials "
                      f"in {self.committed.path}; would restore them and run the rest")
            return None
        elif self.dry_run:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: would run {n_trials - done} trials")
            return None
        else:
            self.echo(f"  tune {cell.dataset}/{cell.arch}: {done}/{n_trials} trials done, running")
            from bench.sweep import tune

            tune(
                [*cell.overrides, f"folds.k={self.study.folds}"], cell.space,
                study_name=cell.optuna_study, storage=str(self.study.storage), n_trials=n_trials,
                n_jobs=int(t.n_jobs), sampler=str(t.sampler),
                # a pruner is a name or {name: ..., its options}; the sampler may take options
                # too (e.g. TPE's n_startup_trials), as in a sweep's settings
                pruner=(OmegaConf.to_container(t.pruner) if OmegaConf.is_config(t.pruner)
                        else str(t.pruner)),
                sampler_kwargs=(OmegaConf.to_container(t.sampler_kwargs)
                                if t.get("sampler_kwargs") else None),
                seed=cell.tuning_seed, parent_tags=self._tags(cell, "tune"),
                outage_wait=float(t.outage_wait),
            )
        st = optuna.load_study(study_name=cell.optuna_study, storage=self.study.storage.connect())
        if not any(tr.state.name == "COMPLETE" for tr in st.get_trials(deepcopy=False)):
            raise StudyError(
                f"{cell.optuna_study}: no trial completed (all pruned or failed); nothing to "
                "retrain. Check the failed trials in MLflow, or raise tuning.n_trials."
            )
        return st

    def _recorded_trials(self, cell: Cell) -> int:
        if self.committed is None:
            return 0
        t = self.committed.trials(cell.optuna_study)
        return int(t["status"].isin(FINISHED_TRIAL_STATES).sum())

    def finals(self, cell: Cell, tuned=None) -> int:
        """Trains the cell's seeds still to run; returns how many of them failed.

        With ``replicas: auto`` they train together as one grouped model
        (:func:`bench.replica_train.run_seeds`), each recorded as the run its seed would
        give alone; a configuration the grouped model cannot take (see
        :func:`bench.replica_train.unsupported`) and a single seed run alone. Every final run
        carries a ``replicas`` tag: the size of the group it trained in, 1 when alone.
        """
        done = self.finished_runs(cell)
        todo = [s for s in self.study.cell_seeds(cell) if s not in done]
        label = f"{cell.dataset}/{cell.arch}" + (f" (tuning seed {cell.tuning_seed})"
                                                 if cell.repeat else "")
        self.echo(f"  {cell.phase} {label}: seeds done {sorted(done)}, to run {todo}")
        if self.dry_run or not todo:
            return 0
        from bench import interrupt
        from bench.replica_train import REPLICAS_TAG, unsupported

        values = None
        if tuned is not None:
            if cell.space is None:
                raise StudyError(f"{cell.dataset}/{cell.arch}: tuned, but the cell names no "
                                 "search space")
            values = best_values(tuned, cell.space)
        tags = self._tags(cell, cell.phase)
        if tuned is not None:
            tags[TAGS["best_trial"]] = str(tuned.best_trial.number)
        interrupt.check()
        epochs = None if tuned is None else self._tuned_epochs(tuned.best_trial)
        if epochs is not None:
            return self._on_all_cases(final_config(cell, todo[0], values), todo, epochs, tags,
                                      grouped=len(todo) > 1 and self.study.replicas(cell.dataset))
        if len(todo) > 1 and self.study.replicas(cell.dataset):
            cfg = final_config(cell, todo[0], values)
            why = unsupported(cfg)
            if why is None:
                return self._group(cfg, todo, tags)
            self.echo(f"    one run per seed: {why}")
        failures = 0
        for seed in todo:
            interrupt.check()
            failures += self._alone(final_config(cell, seed, values), seed,
                                    {**tags, REPLICAS_TAG: "1"})
        return failures

    def _alone(self, cfg, seed: int, tags: dict[str, str]) -> int:
        from bench import interrupt
        from bench.train import run

        try:
            if cfg.model.cell in DETERMINISTIC_CELLS:
                from bench import classical

                classical.run(cfg, tags=tags)
            else:
                run(cfg, tags=tags, callbacks=[interrupt.SafePointInterrupt()])
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failed seed must not stop the study; resume retries it
            self.echo(f"    seed {seed} failed: {type(exc).__name__}: {exc}")
            return 1
        return 0

    def _group(self, cfg, seeds: list[int], tags: dict[str, str]) -> int:
        """The seeds as replicas of one model; a replica that fails is a failed run of its
        own, which a re-run retries like any other."""
        from bench.replica_train import run_seeds

        self.echo(f"    seeds {seeds} trained together as {len(seeds)} replicas")
        return self._failures(seeds, lambda: run_seeds(cfg, seeds, tags=tags))

    def _failures(self, seeds: list[int], train) -> int:
        """Runs ``train`` (one run per seed) and counts the seeds whose run did not finish;
        an error of the whole group fails every seed (each run says so), and a re-run of
        the study retries them like any other failed run."""
        try:
            results = train()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            self.echo(f"    seeds {seeds} failed: {type(exc).__name__}: {exc}")
            return len(seeds)
        failures = 0
        for seed, res in zip(seeds, results, strict=True):
            if res.status != "FINISHED":
                failures += 1
                self.echo(f"    seed {seed} failed: its run {res.run_id} says why (tag "
                          f"{TAGS['error']})")
        return failures

    def _wait_out_an_outage(self) -> None:
        """After failed final runs: if the tracking store is down, waits for it (up to
        ``tuning.outage_wait``) rather than failing every later cell against it; the failed
        seeds run again at the next resume."""
        from bench import outage

        if outage.probe(self.store) is None:
            return
        limit = float(self.study.definition.tuning.outage_wait)
        back, _ = outage.wait_for(self.store, limit)
        if not back:
            raise StudyError(f"the tracking store {self.store} did not answer for {limit:.0f} s "
                             "(tuning.outage_wait); what was recorded is kept: run the same "
                             "command once it is back")

    def _tuned_epochs(self, trial) -> int | None:
        """The epochs a fold-tuned trial chose for its final models; None: tuned on the
        hold-out. A trial restored from a record keeps only its MLflow run, whose tag holds
        them."""
        from bench.fold_train import FOLDS_TAG, TUNED_EPOCHS_TAG

        value = trial.user_attrs.get(TUNED_EPOCHS_TAG)
        if value is None and trial.user_attrs.get(tracking.RUN_ID_ATTR):
            try:
                tags = self.client.get_run(trial.user_attrs[tracking.RUN_ID_ATTR]).data.tags
            except Exception:
                return None
            if tags.get(FOLDS_TAG):
                value = tags.get(TUNED_EPOCHS_TAG)
        return None if value is None else int(value)

    def _on_all_cases(self, cfg, seeds: list[int], epochs: int, tags: dict[str, str],
                      grouped: bool) -> int:
        """The final models of a fold-tuned cell: each seed trained on all training cases for
        the tuned epochs and tested once (``bench.fold_train.run_final``)."""
        from bench.fold_train import run_final
        from bench.replica_train import REPLICAS_TAG

        how = f"together as {len(seeds)} replicas" if grouped else "one at a time"
        self.echo(f"    seeds {seeds} trained on all training cases for {epochs} epochs, {how}")
        if not grouped:
            tags = {**tags, REPLICAS_TAG: "1"}
        return self._failures(
            seeds, lambda: run_final(cfg, seeds, epochs, tags=tags, grouped=grouped))

    def _tags(self, cell: Cell, phase: str) -> dict[str, str]:
        tags = {
            TAGS["study"]: self.study.name,
            TAGS["phase"]: phase,
            TAGS["study_dataset"]: cell.dataset,
            TAGS["arch"]: cell.arch,
        }
        if cell.space is not None:
            tags[TAGS["tuning_seed"]] = str(cell.tuning_seed)
            tags[TAGS["optuna_study"]] = cell.optuna_study
            tags[TAGS["optuna_storage"]] = str(self.study.storage)
        return tags

    # -- session ------------------------------------------------------------------------------

    def _open_session(self, command: str) -> str:
        s = self.study
        exp = tracking.ensure_experiment(
            self.client, SESSION_EXPERIMENT, tracking.default_artifact_root(self.store)
        )
        tags = {
            TAGS["study"]: s.name, TAGS["phase"]: "session", TAGS["command"]: command,
            TAGS["hardware"]: tracking.hardware(), TAGS["tracking_uri"]: str(self.store),
            TAGS["optuna_storage"]: str(s.storage),
            "git_sha": tracking.git_sha(),
        }
        run_id = tracking.start_run(self.client, exp, f"study-{s.name}", tags)
        resolved = cast(dict[str, Any],   # a mapping in, a dict out (the stub says any container)
                        OmegaConf.to_container(s.definition, resolve=True))
        tracking.log_params(self.client, run_id, tracking.flatten(resolved))
        self.client.log_text(run_id, mask(OmegaConf.to_yaml(resolved)), "study.yaml")
        return run_id

    def run(self, command: str = "") -> int:
        """Runs every cell; returns the number of failed final runs (0 when all went well)."""
        s = self.study
        cells = s.cells()
        seeds = f"{len(s.seeds)} seeds" + "".join(
            f", {len(own)} on {d}" for d in sorted(s.enabled_datasets())
            if (own := s.seeds_of(d)) != s.seeds)
        self.echo(f"study {s.name}: {len(cells)} cells x {seeds}; MLflow "
                  f"{self.store}; Optuna {s.storage}")
        for ds, why in s.skipped_datasets().items():
            self.echo(f"  {ds}: skipped ({why})")
        if self.committed is not None:
            c = self.committed
            self.echo(f"  resuming from {c.path}: {c.n_finished} finished runs over "
                      f"{c.n_sessions} earlier session(s) count as done")
        session = None if self.dry_run else self._open_session(command)
        status, failures, start = "FAILED", 0, time.perf_counter()
        error: BaseException | None = None
        try:
            from bench import interrupt

            for cell in cells:
                interrupt.check()
                tuned = self.tune_cell(cell) if cell.space is not None else None
                if cell.space is not None and tuned is None:  # dry run, tuning pending
                    self.echo(f"  {cell.phase} {cell.dataset}/{cell.arch}: after tuning, "
                              f"seeds {s.seeds_of(cell.dataset)}")
                    continue
                lost = self.finals(cell, tuned)
                if lost:
                    self._wait_out_an_outage()
                failures += lost
                if session is not None:   # a session killed outright ends at its last beat
                    tracking.log_metrics(self.client, session,
                                         {"session/heartbeat_ms": time.time() * 1000})
            status = "FINISHED"
        except (KeyboardInterrupt, SystemExit) as exc:
            status, error = "KILLED", exc
            raise
        except Exception as exc:
            error = exc
            raise
        finally:
            if session is not None and status != "FINISHED":
                # the session says why it ended, as a run does
                tracking.log_tags(self.client, session, {TAGS["error"]: _why(error, status)})
            if session is not None:
                tracking.log_metrics(self.client, session, {
                    "session/wall_s": time.perf_counter() - start, "session/failed_runs": failures,
                })
                self.client.set_terminated(session, status)
        return failures


def _why(exc: BaseException | None, status: str) -> str:
    """The ``error`` tag of a session that did not finish: the signal that stopped it, or
    the error's one line."""
    if status == "KILLED":
        from bench import interrupt

        signum = interrupt.received()
        return f"stopped by {interrupt.signal_name(signum)}" if signum is not None else (
            "stopped by SIGINT" if isinstance(exc, KeyboardInterrupt) else "stopped")
    from bench.errors import short_reason

    return f"{type(exc).__name__}: {short_reason(exc)}" if exc is not None else "failed"
