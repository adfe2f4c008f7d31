"""Computes what a study's report says, from its record alone.

:func:`compute` turns a study's record into a :class:`StudyReport`, and a renderer
(:mod:`bench.report.markdown`) turns that into text. Keeping the two apart lets several
renderings of one study show the same evidence, and lets a test look at a verdict or an
interval without parsing Markdown. The structure itself is :mod:`bench.report.model`.

Figures are drawn while computing, because what the report shows depends on whether a figure
could be drawn or fetched; the structure records their paths.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import across as across_mod
from bench.report import (
    aggregate,
    bayes,
    bootstrap,
    comparisons,
    convergence,
    factors,
    figures,
    headline,
    power,
    sensitivity,
    skill,
    stats,
    variance,
)
from bench.report import claims as claims_mod
from bench.report import published as published_refs
from bench.report.analysis import NOT_CANDIDATES, Analysis, DatasetSpec, Options, analyse, specs
from bench.report.collect import StudyData
from bench.report.formatting import Units
from bench.report.model import (
    AcrossSection,
    AggregateRow,
    Budget,
    CellConvergence,
    ClaimRow,
    Commit,
    ConvergenceSection,
    DatasetCost,
    DatasetRun,
    DatasetSection,
    Figure,
    FinalRun,
    FriedmanNemenyi,
    HeatCell,
    Heatmap,
    HeatRow,
    Interrupted,
    LeaderboardRow,
    NoSkill,
    PairwiseBeats,
    Power,
    Predictions,
    Progress,
    RankRow,
    Rope,
    SeedSets,
    SensitivityRow,
    SensitivitySection,
    SignedRank,
    SkippedDataset,
    StudyReport,
    TrialCount,
    Tuning,
    TuningNote,
    VarianceRow,
    VerdictSection,
    WhatWasRun,
    Wilcoxon,
)
from bench.results.sessions import INTERRUPTED

Fetch = Callable[[str, str, Path], bool]   # (run id, artifact path, destination) -> copied?


# ---------------------------------------------------------------------------------------------
# Figures on disk
# ---------------------------------------------------------------------------------------------


class Figures:
    """The figures a build writes, and those it keeps because the record cannot redraw them
    (per-epoch curves and prediction plots of a record rebuilt without its store)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: set[str] = set()
        self.kept: set[str] = set()

    def path(self, name: str) -> Path:
        self.written.add(name)
        return self.folder / name

    def keep(self, name: str) -> bool:
        if (self.folder / name).is_file():
            self.kept.add(name)
            return True
        return False

    def prune(self) -> None:
        if self.folder.is_dir():
            for p in sorted(self.folder.glob("*.png")):
                if p.name not in self.written | self.kept:
                    p.unlink()


def _figure(name: str, kept: bool = False) -> Figure:
    return Figure(f"figures/{name}", kept)


# ---------------------------------------------------------------------------------------------
# The whole report
# ---------------------------------------------------------------------------------------------


def compute(data: StudyData, figs: Figures, *, alpha: float = stats.ALPHA, test: str = "welch",
            fetch: Fetch | None = None) -> StudyReport:
    """The report of a study's record; draws its figures into ``figs`` on the way."""
    primary = primary_tuning_seed(data)
    progress = _progress(data, data.runs)
    runs = _reported_runs(data.runs, primary, progress)
    datasets = sorted(runs["dataset"].unique()) if len(runs) else []
    side = sorted(_side_datasets(data) & set(datasets))
    all_specs = specs(runs) if len(runs) else {}
    opts = Options(alpha=alpha, test=test)
    an = analyse(all_specs, opts, side)
    cells = _convergence_cells(runs, data.trials)
    unconverged = set(convergence.not_converged(cells)["dataset"]) - set(side)
    sens = sensitivity.run(all_specs, opts, side, unconverged) if all_specs else None
    if sens is not None:
        sens.rows += [(label, analyse(alt, opts, side)) for label, alt in
                      _tuning_alternatives(data.runs, primary, progress, all_specs)]
    sections = [dataset_section(data, runs[runs["dataset"] == ds], all_specs[ds],
                                an.comparisons[ds], an, figs, fetch, primary) for ds in datasets]
    conv = convergence_section(cells)
    across = across_section(an, all_specs, alpha, figs)
    return StudyReport(
        study=data.study,
        verdict=VerdictSection(an.verdict, progress if progress is not None and progress.partial
                               else None, _no_skill(runs, an), side, test, alpha),
        what_was_run=what_was_run(data, datasets),
        skipped=_skipped(data),
        datasets=sections,
        convergence=conv,
        across=across,
        sensitivity=_sensitivity(sens) if sens is not None else None,
        variance=_variance(data.runs),
        claims=[ClaimRow(c, claims_mod.measured(data.runs, data.histories, c))
                for c in claims_mod.CLAIMS],
        heatmap=heatmap(sections, conv, across, figs),
    )


def primary_tuning_seed(data: StudyData) -> int | None:
    d = _definition(data)
    if d is not None and d.get("tuning") is not None and d.tuning.get("seed") is not None:
        return int(d.tuning.seed)
    seeds = data.runs["tuning_seed"].dropna()
    return int(seeds.min()) if len(seeds) else None


def _reported_runs(all_runs: pd.DataFrame, primary: int | None,
                   progress: Progress | None) -> pd.DataFrame:
    """The final runs the tables use: a repeated tuning would otherwise count its cell twice,
    and a dataset still running would enter the verdict with only some of its seeds."""
    runs = all_runs[all_runs["tuning_seed"].isna() | (all_runs["tuning_seed"] == primary)] \
        if primary is not None else all_runs
    if progress is not None and progress.partial:
        runs = runs[runs["dataset"].isin(progress.complete)]
    return runs


def _tuning_alternatives(all_runs: pd.DataFrame, primary: int | None, progress: Progress | None,
                         all_specs: dict[str, DatasetSpec]) -> list[tuple[str, dict]]:
    """Where the tuning ran under several sampler seeds, the analysis once per other seed (its
    tuned configurations replacing the primary seed's on those datasets), and once with every
    tuning seed's runs together, so that the verdict is seen to rest, or not, on one tuning run."""
    if primary is None or not len(all_runs):
        return []
    runs = _reported_runs(all_runs, None, progress)
    runs = runs[runs["dataset"].isin(all_specs)]
    tuned = runs.dropna(subset=["tuning_seed"])
    repeated = sorted(ds for ds, g in tuned.groupby("dataset") if g["tuning_seed"].nunique() > 1)
    if not repeated:
        return []
    out = []
    names = ", ".join(repeated)
    for seed in sorted(int(t) for t in tuned["tuning_seed"].unique() if int(t) != primary):
        on = [ds for ds in repeated if (tuned.loc[tuned["dataset"] == ds, "tuning_seed"] == seed).any()]
        alt = runs[runs["dataset"].isin(on)
                   & (runs["tuning_seed"].isna() | (runs["tuning_seed"] == seed))]
        out.append((f"tuning seed {seed} instead of {primary} ({', '.join(on)})",
                    {**all_specs, **specs(alt)}))
    pooled = runs[runs["dataset"].isin(repeated)].copy()
    ts = pooled["tuning_seed"].fillna(primary).astype(int)
    pooled["seed"] = pooled["seed"].astype(int) + 1_000_000 * (ts - primary)
    out.append((f"every tuning seed's runs together, each run one sample of tuning and "
                f"training ({names})", {**all_specs, **specs(pooled)}))
    return out


def _convergence_cells(runs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Convergence per cell of the learned models; the naive baseline does not train."""
    learned = runs[~runs["arch"].isin(NOT_CANDIDATES)] if len(runs) else runs
    return convergence.table(learned, trials=trials)


def _no_skill(runs: pd.DataFrame, an: Analysis) -> list[NoSkill]:
    """The datasets the verdict leaves out, with the numbers that justify it."""
    out = []
    for ds in an.no_skill:
        c = an.comparisons[ds]
        best = c.table.set_index("arch").loc[c.anchor]
        out.append(NoSkill(ds, c.anchor, float(best["mean"]), c.reference, float(best["skill"]),
                           _dataset_meta(runs, ds)[2]))
    return out


def _progress(data: StudyData, runs: pd.DataFrame) -> Progress | None:
    """The plan of the latest session's definition against the final runs recorded."""
    from bench.study import Study

    d = _definition(data)
    if d is None or not len(runs):
        return None
    try:
        plan = Study(d)
        cells = plan.cells()
    except Exception:   # a definition from an older layout: no plan to compare with
        return None
    planned: dict[str, int] = {}
    recorded: dict[str, int] = {}
    for c in cells:
        seeds = plan.cell_seeds(c)
        planned[c.dataset] = planned.get(c.dataset, 0) + len(seeds)
        m = (runs["dataset"] == c.dataset) & (runs["arch"] == c.arch) & runs["seed"].isin(seeds)
        if c.space is not None:
            m &= runs["tuning_seed"].fillna(plan.tuning_seeds(c.dataset)[0]) == c.tuning_seed
        recorded[c.dataset] = recorded.get(c.dataset, 0) + int(runs.loc[m, "seed"].nunique())
    return Progress(planned, recorded)


def _definition(data: StudyData):
    from omegaconf import OmegaConf

    if not data.definition:
        return None
    try:
        return OmegaConf.create(data.definition)
    except Exception:
        return None


def _side_datasets(data: StudyData) -> set[str]:
    d = _definition(data)
    if d is None:
        return set()
    return {k for k, v in (d.get("datasets") or {}).items() if not v.get("verdict", True)}


def _skipped(data: StudyData) -> list[SkippedDataset]:
    """Datasets the definition lists but did not run (e.g. Jena needs its download)."""
    d = _definition(data)
    if d is None:
        return []
    return [SkippedDataset(k, str(v.get("needs", "disabled in the study definition")))
            for k, v in (d.get("datasets") or {}).items() if not v.get("enabled", True)]


def _dataset_meta(runs: pd.DataFrame, ds: str) -> tuple[str, str, Units, str]:
    r = runs[runs["dataset"] == ds].iloc[0]
    return r["dataset_name"], r["direction"], Units(r["metric"], r["value_units"]), r["task"]


# ---------------------------------------------------------------------------------------------
# What was run
# ---------------------------------------------------------------------------------------------


def union_length(spans: list[tuple[float, float]]) -> float:
    """Length of the union of sorted intervals: sessions running side by side count once."""
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most sessions running at the same time; touching ones ran one after the other."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def seed_sets(runs: pd.DataFrame, datasets: list[str]) -> SeedSets | None:
    """The seed sets of the reported datasets: the most common one, then the datasets that
    ran another (more seeds where runs take seconds)."""
    if not len(runs):
        return None
    by_ds = {d: tuple(sorted(int(s) for s in runs.loc[runs["dataset"] == d, "seed"].unique()))
             for d in (datasets or sorted(runs["dataset"].unique()))}
    common = Counter(by_ds.values()).most_common(1)[0][0]
    others: dict[tuple, list[str]] = {}
    for d, s in by_ds.items():
        if s != common:
            others.setdefault(s, []).append(d)
    return SeedSets(common, [(s, sorted(ds)) for s, ds in
                             sorted(others.items(), key=lambda kv: (len(kv[0]), kv[0]))])


def budget(definition: str) -> Budget | None:
    """The tuning budget per cell; None when no session recorded a definition with one."""
    from omegaconf import DictConfig, OmegaConf

    try:
        d = OmegaConf.create(definition) if definition else None
    except Exception:
        d = None
    if not isinstance(d, DictConfig) or d.get("tuning") is None:
        return None
    t = d.tuning
    n_trials = int(t.get("n_trials", 0))
    repeats = {k: list(v.get("tuning_seeds")) for k, v in (d.get("datasets") or {}).items()
               if v.get("tuning_seeds") and len(v.get("tuning_seeds")) > 1}
    return Budget(n_trials, str(t.get("sampler")), str(t.get("seed")), str(t.get("pruner")),
                  repeats, [str(o) for o in d.get("overrides") or []], d.get("match_params"),
                  None if t.get("folds") is None else str(t.get("folds")))


def what_was_run(data: StudyData, datasets: list[str]) -> WhatWasRun:
    r = data.runs
    s = data.sessions
    archs = sorted(r["arch"].unique()) if len(r) else []
    hardware: list[str] = []
    wall, at_once, commands, stores, source = None, 0, [], None, None
    if len(s):
        hardware = sorted(set(s["hardware"].dropna()) | set(r.get("hardware", pd.Series()).dropna()))
        spans = sorted((float(a), float(b)) for a, b in zip(s["start_ms"], s["end_ms"], strict=True)
                       if pd.notna(a) and pd.notna(b))
        if spans:
            wall, at_once = union_length(spans) / 1000, most_at_once(spans)
        commands = list(dict.fromkeys(s["command"].dropna()))
        last = s.iloc[-1]
        if isinstance(last.get("tag:tracking_uri"), str):
            stores = (str(last.get("tag:tracking_uri")), str(last.get("tag:optuna_storage")))
        if isinstance(last.get("source"), str) and last["source"] != "mlflow":
            source = last["source"]
    others = data.all_runs[data.all_runs["kind"].isin(["final", "baseline", "trial"])]
    compute = (others["end_ms"] - others["start_ms"]).dropna()
    return WhatWasRun(
        datasets=[DatasetRun(d, _dataset_meta(r, d)[2], _dataset_meta(r, d)[1]) for d in datasets],
        archs=archs, budget=budget(data.definition), seeds=seed_sets(r, datasets),
        hardware=hardware, sessions=len(s), wall_s=wall, at_once=at_once, final_runs=len(r),
        trials=int((data.all_runs["kind"] == "trial").sum()),
        compute_s=float(compute.sum()) / 1000 if len(compute) else None,
        commands=commands, stores=stores, record_source=source, definition=data.definition,
        commits=commits(r), interrupted=interrupted(s), costs=costs(others),
    )


def costs(runs: pd.DataFrame) -> list[DatasetCost]:
    """Per dataset, most expensive first. A run's time is its ``time/wall_s`` (for a grouped
    run, its share of the group's time), else the span of its MLflow run."""
    if not len(runs) or "dataset" not in runs.columns:
        return []
    span = (runs["end_ms"] - runs["start_ms"]) / 1000
    own = runs["metric:time/wall_s"] if "metric:time/wall_s" in runs.columns else span * np.nan
    seconds_ = own.where(own.notna(), span).fillna(0.0)
    out = []
    for ds, idx in runs.groupby("dataset").groups.items():
        trial = runs.loc[idx, "kind"] == "trial"
        s = seconds_.loc[idx]
        out.append(DatasetCost(str(ds), int((~trial).sum()), int(trial.sum()),
                               float(s[~trial].sum()), float(s[trial].sum())))
    return sorted(out, key=lambda c: (-(c.final_s + c.trial_s), c.dataset))


def commits(runs: pd.DataFrame) -> list[Commit]:
    """The commits the final runs were made at, oldest first: a study resumed over weeks mixes
    code versions, and a reader checking a number needs to know which."""
    if not len(runs) or "git_sha" not in runs.columns:
        return []
    r = runs.assign(sha=runs["git_sha"].fillna("").astype(str).replace("", "unknown"),
                    at=pd.to_numeric(runs["start_ms"], errors="coerce").astype(float))
    out = [Commit(str(sha), len(g), float(g["at"].min()), float(g["at"].max()))
           for sha, g in r.groupby("sha", sort=True)]
    return sorted(out, key=lambda c: (not math.isfinite(c.first_ms),
                                      c.first_ms if math.isfinite(c.first_ms) else 0.0, c.sha))


def interrupted(sessions: pd.DataFrame) -> list[Interrupted]:
    if not len(sessions):
        return []
    cut = sessions[sessions["status"] == INTERRUPTED]
    def ms(v: object) -> float:
        return float(v) if pd.notna(v) else math.nan   # type: ignore[arg-type]

    return [Interrupted(str(x.run_id), ms(x.start_ms), ms(x.end_ms))
            for x in cut.itertuples(index=False)]


# ---------------------------------------------------------------------------------------------
# Per dataset
# ---------------------------------------------------------------------------------------------


def dataset_section(data: StudyData, runs: pd.DataFrame, spec: DatasetSpec,
                    comp: stats.DatasetComparison, an: Analysis, figs: Figures,
                    fetch: Fetch | None, primary: int | None) -> DatasetSection:
    ds = spec.dataset
    name, direction, u, task = _dataset_meta(runs, ds)
    role = "side" if ds in an.side else "no skill" if ds in an.no_skill else "verdict"
    board = leaderboard(runs, comp)
    return DatasetSection(
        dataset=ds, name=name, units=u, direction=direction, task=task, role=role,
        test=comp.test, n_comparisons=int(comp.table["p_holm"].notna().sum()),
        rope=_rope(spec, comp), power=Power(comp.mde, comp.alpha, comp.seeds, comp.pooled_sd,
                                            comp.rope),
        leaderboard=board,
        tests_ran=sorted({t for t in comp.table["test"] if t}),
        anchor=comp.anchor, best_overall=comp.best_overall, alpha=comp.alpha,
        top_group=comp.top_group, significantly_worse=comp.significantly_worse,
        untested=comp.untested, equivalent=_equivalent(comp),
        pairwise=_pairwise(runs, comp, direction),
        curves=_curves(data, runs, u, figs, ds),
        predictions=_predictions(runs, comp, figs, fetch, ds) if task == "regression" else None,
        tuning=tuning(data, ds, primary),
        runs=_final_runs(runs, comp),
        published=published_refs.section(name, spec.metric, direction, board),
    )


def _final_runs(runs: pd.DataFrame, comp: stats.DatasetComparison) -> list[FinalRun]:
    """The runs behind the leaderboard, so that a reader can open any of them in MLflow."""
    order = {a: i for i, a in enumerate(comp.table["arch"])}
    rows = runs[runs["arch"].isin(order)]
    return sorted((FinalRun(str(a), int(s), str(r)) for a, s, r in
                   rows[["arch", "seed", "run_id"]].itertuples(index=False) if isinstance(r, str)),
                  key=lambda f: (order[f.arch], f.seed, f.run_id))


def _num(runs: pd.DataFrame, col: str) -> float:
    if col not in runs.columns:
        return math.nan
    v = pd.to_numeric(runs[col], errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def leaderboard(runs: pd.DataFrame, comp: stats.DatasetComparison) -> list[LeaderboardRow]:
    """The comparison's table, best mean first, with each architecture's size and speed."""
    rows = []
    for t in comp.table.itertuples(index=False):
        a = runs[runs["arch"] == t.arch]
        rows.append(LeaderboardRow(
            arch=t.arch, candidate=bool(t.candidate), anchor=t.arch == comp.anchor,
            status=t.status, n=int(t.n), mean=t.mean, ci_low=t.ci_low, ci_high=t.ci_high,
            params=_num(a, "param:n_params"), epoch_s=_num(a, "metric:time/mean_epoch_s"),
            skill=t.skill, skill_low=t.skill_low, skill_high=t.skill_high,
            beats_naive=bool(t.beats_naive), p_beats_naive=t.p_beats_naive, p_holm=t.p_holm,
            p_anchor_beats=t.p_best_beats, p_better=t.p_better, p_equivalent=t.p_equivalent,
            p_worse=t.p_worse,
        ))
    return rows


def _rope(spec: DatasetSpec, comp: stats.DatasetComparison) -> Rope:
    ref, ref_name = spec.reference
    return Rope(comp.rope, spec.rope, spec.rope_source,
                skill.rope_in_skill_units(spec.rope, spec.direction, ref), ref, ref_name)


def _equivalent(comp: stats.DatasetComparison) -> list[str]:
    return [t.arch for t in comp.table.itertuples() if np.isfinite(t.p_equivalent)
            and t.p_equivalent >= bayes.BAYES_LEVEL and t.candidate]


def _pairwise(runs: pd.DataFrame, comp: stats.DatasetComparison,
              direction: str) -> PairwiseBeats | None:
    """Only a top group of three or more: with two, the leaderboard's column says it all."""
    top = [a for a in comp.top_group if a not in NOT_CANDIDATES]
    if len(top) < 3:
        return None
    m = stats.pairwise_prob_beats(runs, direction, top)
    return PairwiseBeats(top, {a: {b: float(m.loc[a, b]) for b in top if b != a} for a in top})


def _curves(data: StudyData, runs: pd.DataFrame, u: Units, figs: Figures, ds: str) -> Figure | None:
    """Drawn from the record's curves, else the committed figure when the record has none."""
    name = f"{ds}_curves.png"
    if _curves_figure(data, runs, u, f"{ds}: validation curves (mean over seeds, band = range)",
                      figs.path(name)):
        return _figure(name)
    figs.written.discard(name)
    return _figure(name, kept=True) if figs.keep(name) else None


def _curves_figure(data: StudyData, runs: pd.DataFrame, u: Units, title: str, dest: Path) -> bool:
    m = runs.iloc[0]["metric"]
    keys = [f"val/{m}_units", f"val/{m}"] if u.units else [f"val/{m}"]
    curves: dict[str, list] = {}
    naive = None
    for arch, rid in runs[["arch", "run_id"]].itertuples(index=False):
        hist = data.histories.get(rid, {})
        h = next((hist[k] for k in keys if hist.get(k)), None)
        if not h:
            continue
        if u.percent:
            h = [(e, 100 * v) for e, v in h]
        if arch == "naive":
            naive = naive or h
        else:
            curves.setdefault(arch, []).append(h)
    if not curves:
        return False
    fig = figures.learning_curves(curves, f"validation {u.label()}", title, naive)
    figures.save(fig, dest)
    return True


def _median_run(runs: pd.DataFrame, arch: str) -> pd.Series:
    a = runs[runs["arch"] == arch].sort_values("seed")
    a = a[np.isfinite(a["value"].to_numpy(float))]
    med = float(np.median(a["value"]))
    idx = (a["value"] - med).abs().to_numpy().argmin()
    return a.iloc[int(idx)]


def _predictions(runs: pd.DataFrame, comp: stats.DatasetComparison, figs: Figures,
                 fetch: Fetch | None, ds: str) -> Predictions | None:
    """The run's own plot from MLflow, else the committed one; the record cannot redraw it."""
    # The naive baseline can have the best mean (SBUX): the figure is of the best learned model.
    shown = comp.anchor if comp.anchor not in NOT_CANDIDATES else next(
        (a for a in comp.table["arch"] if a not in NOT_CANDIDATES), comp.anchor)
    best_run = _median_run(runs, shown)
    name = f"{ds}_predictions.png"
    copied = fetch is not None and fetch(best_run["run_id"], "plots/predictions_vs_actual.png",
                                         figs.path(name))
    if not copied:
        figs.written.discard(name)
    if copied or figs.keep(name):
        return Predictions(shown, int(best_run["seed"]), _figure(name))
    return None


def tuning(data: StudyData, ds: str, primary: int | None) -> Tuning:
    """Trial counts and fANOVA importances per architecture, from the record's trials, so a
    report rebuilt without the Optuna storage still shows how the tuning went."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = data.trials
    out = Tuning()
    if t.empty or not (t["dataset"] == ds).any():
        return out
    t = t[t["dataset"] == ds]
    if primary is not None and t["tuning_seed"].notna().any():
        t = t[t["tuning_seed"] == primary]
    for arch, g in t.groupby("arch", sort=True):
        states = g["status"].fillna("")
        count = {s: int((states == s).sum()) for s in ("COMPLETE", "PRUNED", "FAIL")}
        out.counts.append(TrialCount(arch, len(g), count["COMPLETE"], count["PRUNED"],
                                     count["FAIL"]))
        done = g[(states == "COMPLETE") & g["trial_params"].notna() & g["distributions"].notna()]
        if len(done) < 2:
            out.notes.append(TuningNote(arch))
            continue
        st = _replay(done)
        try:
            imp = optuna.importance.get_param_importances(
                st, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:
            out.notes.append(TuningNote(arch, f"{type(exc).__name__}: {exc}"))
            continue
        out.importance[arch] = dict(imp)
    return out


def _replay(done: pd.DataFrame):
    """The complete trials as an in-memory Optuna study, which fANOVA reads (seeded, so the
    importances do not change between builds)."""
    import json

    import optuna
    from optuna.distributions import json_to_distribution

    st = optuna.create_study()
    for _, r in done.sort_values("trial").iterrows():
        dists = {k: json_to_distribution(v) for k, v in json.loads(r["distributions"]).items()}
        st.add_trial(optuna.trial.create_trial(
            params=json.loads(r["trial_params"]), distributions=dists, value=float(r["value"])))
    return st


# ---------------------------------------------------------------------------------------------
# Convergence, sensitivity, variance
# ---------------------------------------------------------------------------------------------


def convergence_section(cells: pd.DataFrame, tail: float = convergence.TAIL) -> ConvergenceSection:
    ok, judged, unknown = convergence.summary(cells)
    bad = convergence.not_converged(cells)
    rows = [CellConvergence(str(r["dataset"]), str(r["arch"]), int(r["seeds"]), int(r["converged"]),
                            int(r["unknown"]), str(r["example"]), _fit(r.get("cell_fit")),
                            int(r.get("fitted", 0)), int(r["seeds"] - r.get("fit_unknown", 0)),
                            float(r.get("fit_ratio", math.nan))) for _, r in bad.iterrows()]
    return ConvergenceSection(len(cells), ok, judged, unknown, tail, rows, convergence.FIT_RATIO)


def _fit(value) -> bool | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else bool(value)


def _sensitivity(sens: sensitivity.Sensitivity) -> SensitivitySection:
    return SensitivitySection(
        [SensitivityRow(label, list(a.in_verdict), a.verdict, a is sens.baseline)
         for label, a in sens.rows], sens.changers)


def _variance(runs: pd.DataFrame) -> list[VarianceRow]:
    return [VarianceRow(r.dataset, r.arch, int(r.tuning_seeds), float(r.training_seeds),
                        float(r.sd_tuning), float(r.sd_training), float(r.tuning_share))
            for r in variance.table(runs).itertuples()]


# ---------------------------------------------------------------------------------------------
# The heat map
# ---------------------------------------------------------------------------------------------


def heatmap(sections: list[DatasetSection], conv: ConvergenceSection, across: AcrossSection,
            figs: Figures) -> Heatmap | None:
    """Mean skill of every candidate on every dataset, from the leaderboards already computed:
    the picture shows the tables' numbers, not a second estimate of them."""
    if not sections:
        return None
    unconverged = {(c.dataset, c.arch) for c in conv.not_converged}
    not_fitted = {(c.dataset, c.arch) for c in conv.not_fitted}
    rows = []
    for s in sections:
        cand = [r for r in s.leaderboard if r.candidate and np.isfinite(r.skill)]
        ranks = _ranks([r.skill for r in cand])
        rows.append(HeatRow(s.dataset, s.role, {
            r.arch: HeatCell(float(r.skill), rank, r.arch in s.top_group,
                             (s.dataset, r.arch) not in unconverged,
                             (s.dataset, r.arch) not in not_fitted)
            for r, rank in zip(cand, ranks, strict=True)}))
    ranked = [r.arch for r in across.ranking]
    others = sorted({a for r in rows for a in r.cells} - set(ranked))
    archs = ranked + others
    if not archs:
        return None
    name = "heatmap.png"
    labels = [r.dataset + {"side": " (side)", "no skill": " (no skill)"}.get(r.role, "")
              for r in rows]
    fig = figures.heatmap(
        [[r.cells[a].skill if a in r.cells else math.nan for a in archs] for r in rows],
        [[r.cells[a].rank if a in r.cells else math.nan for a in archs] for r in rows],
        [[a in r.cells and r.cells[a].top for a in archs] for r in rows],
        [[figures.cell_mark(r.cells[a].fitted, r.cells[a].converged) if a in r.cells else ""
          for a in archs] for r in rows],
        labels, archs,
        "Mean skill (colour), rank within the dataset (number)\n"
        "outlined: in the top group; \u2021: did not fit; \u2020: not converged")
    figures.save(fig, figs.path(name))
    return Heatmap(archs, rows, _figure(name))


def _ranks(values: list[float]) -> list[float]:
    """Ranks, 1 = the highest, ties sharing the average rank (as the across-dataset ranks)."""
    from scipy.stats import rankdata

    return [float(x) for x in rankdata(-np.asarray(values, dtype=float), method="average")]


# ---------------------------------------------------------------------------------------------
# Across datasets
# ---------------------------------------------------------------------------------------------


def _skill_means(all_specs: dict[str, DatasetSpec], datasets: list[str]):
    """Per-run skill scores {dataset: {arch: array}} and the datasets x archs table of means:
    skill, not the raw score, puts datasets of different metrics on one scale."""
    runs_skill: dict[str, dict[str, np.ndarray]] = {}
    for ds in datasets:
        spec = all_specs[ds]
        ref, _ = spec.reference
        runs_skill[ds] = {
            a: skill.skill_score(g["value"].to_numpy(float), ref, spec.direction)
            for a, g in spec.runs.groupby("arch", sort=True) if a not in NOT_CANDIDATES
        }
    means = pd.DataFrame({ds: {a: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
                               for a, v in d.items()} for ds, d in runs_skill.items()}).T
    return runs_skill, means


def across_section(an: Analysis, all_specs: dict[str, DatasetSpec], alpha: float,
                   figs: Figures) -> AcrossSection:
    """Skill scores make datasets comparable; ranks, paired tests and aggregates over them."""
    datasets = list(an.in_verdict)
    out = AcrossSection(datasets, list(an.no_skill) if an.options.exclude_no_skill else [], alpha)
    if not datasets:
        return out
    runs_skill, means = _skill_means(all_specs, datasets)
    complete = [a for a in means.columns if means[a].notna().all()]
    out.dropped = sorted(set(means.columns) - set(complete))
    scores = means[sorted(complete)]
    if scores.shape[1] < 2:
        return out
    ranks = stats.rank_matrix(scores, dict.fromkeys(scores.index, "maximize"))
    avg = ranks.mean(axis=0)
    order = avg.iloc[np.lexsort((np.array(avg.index, dtype=str), avg.to_numpy(float)))]
    out.ranking = [RankRow(a, {ds: float(scores.loc[ds, a]) for ds in datasets},
                           {ds: float(ranks.loc[ds, a]) for ds in datasets}, float(order[a]))
                   for a in order.index]
    out.wilcoxon, out.cd_diagram = _wilcoxon(scores, order, alpha, figs)
    out.signed_rank = _signed_rank(scores, order)
    out.lead, out.aggregate = _aggregate(runs_skill, order, datasets)
    out.friedman = _friedman(ranks, alpha)
    if len(datasets) >= 2:
        kept = {ds: {a: runs_skill[ds][a] for a in scores.columns} for ds in datasets}
        pw = across_mod.wilcoxon_holm(scores)
        out.pairs = comparisons.compare_all(kept, scores, pw, skill.SKILL_ROPE)
        planning = power.plan(comparisons.differences(scores), alpha)
        out.headline = headline.compute(comparisons.order_by_mean(scores), out.pairs, planning,
                                        len(datasets))
        out.factors = factors.fit(scores)
    return out


def _wilcoxon(scores: pd.DataFrame, order: pd.Series, alpha: float,
              figs: Figures) -> tuple[Wilcoxon, Figure | None]:
    """Pairwise Wilcoxon-Holm with cliques, drawn as a critical-difference diagram."""
    n = len(scores)
    pw = across_mod.wilcoxon_holm(scores)
    cl = across_mod.cliques(order, pw, alpha)
    sig = [(a, b) for i, a in enumerate(order.index) for b in order.index[i + 1:]
           if pw.loc[a, b] < alpha]
    fig = None
    if n >= 2:
        drawing = figures.cd_diagram(
            order, pw, None, alpha,
            f"Average rank over {n} datasets (1 = best); bars: Wilcoxon-Holm cliques")
        figures.save(drawing, figs.path("cd_diagram.png"))
        fig = _figure("cd_diagram.png")
    return Wilcoxon(across_mod.smallest_p(n), sig, cl), fig


def _signed_rank(scores: pd.DataFrame, order: pd.Series) -> list[SignedRank]:
    """The Bayesian signed-rank test of the best-ranked architecture against each other."""
    if len(scores) < 2:
        return []
    best = order.index[0]
    return [SignedRank(best, a, bayes.signed_rank(scores[best].to_numpy(), scores[a].to_numpy(),
                                                  skill.SKILL_ROPE))
            for a in order.index[1:]]


def _aggregate(runs_skill: dict[str, dict[str, np.ndarray]], order: pd.Series,
               datasets: list[str]) -> tuple[str, list[AggregateRow]]:
    """Interquartile-mean skill and the probability of improvement over the lead, with
    stratified-bootstrap intervals."""
    per_arch = aggregate.by_arch(runs_skill, list(order.index), datasets)
    iqms = {a: aggregate.iqm_interval(per_arch[a]) for a in order.index}
    lead = max(order.index, key=lambda a: (iqms[a].value, -list(order.index).index(a)))
    rows = [AggregateRow(a, iqms[a], aggregate.improvement_interval(per_arch[lead], per_arch[a])
                         if a != lead else None, bootstrap.iqm_interval(per_arch[a]),
                         bootstrap.improvement_interval(per_arch[lead], per_arch[a])
                         if a != lead else None)
            for a in sorted(order.index, key=lambda a: (-iqms[a].value, a))]
    return lead, rows


def _friedman(ranks: pd.DataFrame, alpha: float) -> FriedmanNemenyi | None:
    """The secondary view: Friedman's test, Nemenyi's critical difference and its power."""
    n, k = ranks.shape
    if n < 2:
        return None
    return FriedmanNemenyi(stats.friedman(ranks), stats.nemenyi_cd(k, n, alpha),
                           stats.nemenyi_q(k, alpha), k, n, stats.power_note(k, n, alpha))
