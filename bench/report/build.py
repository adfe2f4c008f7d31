"""Builds ``reports/<study>/``: README.md, results.csv and figures, all from the tidy record.

Every number in the README is computed here from the record, and the verdict comes from the same
tables the README prints, so the prose cannot disagree with the evidence. Nothing depends on
when or where the report is generated: regenerating from the same record gives the same bytes.
Reading the stores is a separate first step (:func:`build` writes the record, then builds from
the file), so a report built from MLflow and one rebuilt from the committed record are the same.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import across as across_mod
from bench.report import (
    aggregate,
    bayes,
    convergence,
    figures,
    record,
    sensitivity,
    skill,
    stats,
    variance,
)
from bench.report import claims as claims_mod
from bench.report.analysis import NOT_CANDIDATES, Analysis, DatasetSpec, Options, analyse, specs
from bench.report.collect import StudyData, read_artifact, results_table, study_data
from bench.stores import StoreAddress, mask

NOT_RANKED = NOT_CANDIDATES
Fetch = Callable[[str, str, Path], bool]   # (run id, artifact path, destination) -> copied?


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    metric: str
    units: str

    @property
    def percent(self) -> bool:
        return self.metric == "accuracy"

    def label(self) -> str:
        if self.percent:
            return "accuracy (%)"
        return f"{self.metric} ({self.units})" if self.units else self.metric

    def fmt(self, x: float) -> str:
        if x is None or not np.isfinite(x):
            return "n/a"
        if self.percent:
            return f"{100 * x:.2f}"
        if self.metric == "r2":
            return f"{x:.3f}"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.4g}"


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _seconds(s: float) -> str:
    if not np.isfinite(s):
        return "n/a"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def _dataset_meta(runs: pd.DataFrame, ds: str) -> tuple[str, str, Units, str]:
    r = runs[runs["dataset"] == ds].iloc[0]
    return r["dataset_name"], r["direction"], Units(r["metric"], r["value_units"]), r["task"]


def _num(runs: pd.DataFrame, col: str) -> float:
    if col not in runs.columns:
        return math.nan
    v = pd.to_numeric(runs[col], errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def _pct(p: float) -> str:
    return "" if p is None or not np.isfinite(p) else f"{p:.2f}"


def _skill_fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3f}"


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


def leaderboard(runs: pd.DataFrame, comp: stats.DatasetComparison, u: Units) -> str:
    rows = []
    for i, t in enumerate(comp.table.itertuples(index=False), start=1):
        a = runs[runs["arch"] == t.arch]
        params = _num(a, "param:n_params")
        epoch_s = _num(a, "metric:time/mean_epoch_s")
        if t.n >= 2 and np.isfinite(t.ci_low) and t.ci_low == t.ci_high:
            ci = "(no seed variance)"
        else:
            ci = "" if not np.isfinite(t.ci_low) else f"[{u.fmt(t.ci_low)}, {u.fmt(t.ci_high)}]"
        if t.arch == comp.anchor:
            group = "anchor" + (" (best candidate)" if t.candidate else "")
        elif not t.candidate:
            group = "reference"
        else:
            group = t.status
        skill_ci = ("" if not np.isfinite(t.skill_low) else
                    f" [{_skill_fmt(t.skill_low)}, {_skill_fmt(t.skill_high)}]")
        beats = ("" if not t.candidate else
                 ("yes" if t.beats_naive else "no") + (f" ({_p(t.p_beats_naive)})"
                                                        if np.isfinite(t.p_beats_naive) else ""))
        bayes_cell = ("" if not np.isfinite(t.p_better) else
                      f"{t.p_better:.2f} / {t.p_equivalent:.2f} / {t.p_worse:.2f}")
        rows.append([
            str(i), f"`{t.arch}`", u.fmt(t.mean), ci, str(t.n),
            "n/a" if not np.isfinite(params) else f"{params:,.0f}",
            "n/a" if not np.isfinite(epoch_s) else f"{epoch_s:.2f}",
            _skill_fmt(t.skill) + skill_ci, beats, _p(t.p_holm), _pct(t.p_best_beats), bayes_cell,
            group,
        ])
    header = ["#", "architecture", f"test {u.label()}", "95% CI", "seeds", "params",
              "s / epoch", "skill [95% CI]", "beats naive (p)", "p vs anchor (Holm)",
              "P(anchor beats)", "P(better / equiv. / worse)", "group"]
    return _md_table(header, rows, ["r", "l"] + ["r"] * 10 + ["l"])


def _median_run(runs: pd.DataFrame, arch: str) -> pd.Series:
    a = runs[runs["arch"] == arch].sort_values("seed")
    a = a[np.isfinite(a["value"].to_numpy(float))]
    med = float(np.median(a["value"]))
    idx = (a["value"] - med).abs().to_numpy().argmin()
    return a.iloc[int(idx)]


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


def _tuning(data: StudyData, ds: str, primary: int | None) -> tuple[str, list[str]]:
    """Trial counts and fANOVA importances per architecture, from the record's trials."""
    import json

    import optuna
    from optuna.distributions import json_to_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = data.trials
    if t.empty or not (t["dataset"] == ds).any():
        return "", []
    t = t[t["dataset"] == ds]
    if primary is not None and t["tuning_seed"].notna().any():
        t = t[t["tuning_seed"] == primary]
    budget_rows, per_arch, notes = [], {}, []
    for arch, g in t.groupby("arch", sort=True):
        states = g["status"].fillna("")
        count = {s: int((states == s).sum()) for s in ("COMPLETE", "PRUNED", "FAIL")}
        budget_rows.append([f"`{arch}`", str(len(g)), str(count["COMPLETE"]),
                            str(count["PRUNED"]), str(count["FAIL"])])
        done = g[(states == "COMPLETE") & g["trial_params"].notna() & g["distributions"].notna()]
        if len(done) < 2:
            notes.append(f"`{arch}`: fewer than 2 complete trials, no importance estimate.")
            continue
        st = optuna.create_study()
        for _, r in done.sort_values("trial").iterrows():
            dists = {k: json_to_distribution(v) for k, v in json.loads(r["distributions"]).items()}
            st.add_trial(optuna.trial.create_trial(
                params=json.loads(r["trial_params"]), distributions=dists, value=float(r["value"])))
        try:
            imp = optuna.importance.get_param_importances(
                st, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:
            notes.append(f"`{arch}`: fANOVA failed ({type(exc).__name__}: {exc}).")
            continue
        per_arch[arch] = dict(imp)
    out = []
    if budget_rows:
        out.append("Tuning trials per cell (Optuna):\n\n" + _md_table(
            ["architecture", "trials", "complete", "pruned", "failed"], budget_rows))
    if per_arch:
        params = sorted({p for d in per_arch.values() for p in d})
        rows = [[f"`{a}`"] + [f"{d[p]:.2f}" if p in d else "" for p in params]
                for a, d in sorted(per_arch.items())]
        out.append("fANOVA importance (fraction of the objective's variance over the trials; "
                   "few trials make these rough):\n\n" + _md_table(["architecture", *params], rows))
    return "\n\n".join(out), notes


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Length of the union of sorted intervals: sessions running side by side count once."""
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _seed_range(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{len(seeds)} ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


def _seeds_text(runs: pd.DataFrame, datasets: list[str]) -> str:
    """The seed sets of the reported datasets: the most common one, then the datasets that
    ran another (more seeds where runs take seconds)."""
    if not len(runs):
        return "none"
    by_ds = {d: tuple(sorted(int(s) for s in runs.loc[runs["dataset"] == d, "seed"].unique()))
             for d in (datasets or sorted(runs["dataset"].unique()))}
    common = Counter(by_ds.values()).most_common(1)[0][0]
    text = _seed_range(list(common))
    others: dict[tuple, list[str]] = {}
    for d, s in by_ds.items():
        if s != common:
            others.setdefault(s, []).append(d)
    for s, ds in sorted(others.items(), key=lambda kv: (len(kv[0]), kv[0])):
        text += f"; {_seed_range(list(s))} on " + ", ".join(f"`{d}`" for d in sorted(ds))
    return text


def _what_was_run(data: StudyData, datasets: list[str], study: str) -> str:
    r = data.runs
    lines = ["## What was run", ""]
    defn = data.definition
    archs = sorted(r["arch"].unique()) if len(r) else []
    lines.append(f"- **Datasets** ({len(datasets)}): " + ", ".join(
        f"`{d}` ({_dataset_meta(r, d)[2].label()}, {_dataset_meta(r, d)[1]})" for d in datasets))
    lines.append(f"- **Architectures** ({len(archs)}): " + ", ".join(f"`{a}`" for a in archs))
    lines.append(_budget_line(defn))
    lines.append(f"- **Seeds** per architecture: {_seeds_text(r, datasets)}; each final run is "
                 "tested once, on the test split, after restoring its best validation "
                 "checkpoint.")
    s = data.sessions
    if len(s):
        hw = sorted(set(s["hardware"].dropna()) | set(r.get("hardware", pd.Series()).dropna()))
        if hw:
            lines.append("- **Hardware**: " + "; ".join(hw))
        spans = sorted((float(a), float(b)) for a, b in zip(s["start_ms"], s["end_ms"],
                                                               strict=True)
                       if pd.notna(a) and pd.notna(b))
        if spans:
            wall, at_once = _union_length(spans), _most_at_once(spans)
            lines.append(f"- **Wall time** of the study command(s): "
                         f"{_seconds(wall / 1000)} over {len(s)} session(s)"
                         + (f", up to {at_once} at once (disjoint shares of the datasets)"
                            if at_once > 1 else ""))
    others = data.all_runs[data.all_runs["kind"].isin(["final", "baseline", "trial"])]
    compute = (others["end_ms"] - others["start_ms"]).dropna()
    trials = int((data.all_runs["kind"] == "trial").sum())
    line = f"- **Runs** in the record: {len(r)} final runs, {trials} tuning trials"
    if len(compute):
        line += f"; summed run time {_seconds(float(compute.sum()) / 1000)}"
    lines.append(line)
    if len(s):
        cmds = list(dict.fromkeys(s["command"].dropna()))
        if cmds:
            lines.append("- **Command**: " + "; ".join(f"`{c}`" for c in cmds))
        last = s.iloc[-1]
        if isinstance(last.get("tag:tracking_uri"), str):
            lines.append(f"- **Stores**: MLflow `{last.get('tag:tracking_uri')}`, Optuna "
                         f"`{last.get('tag:optuna_storage')}` (relative to the project)")
        if isinstance(last.get("source"), str) and last["source"] != "mlflow":
            lines.append(f"- **Record**: {last['source']}")
    lines.append(f"- **Report**: `python -m bench.report --study {study}` (from the stores: "
                 f"writes `{record.RECORD_NAME}/`, then builds from it) or `python -m bench.report --from "
                 f"reports/{study}/{record.RECORD_NAME}` (from the record alone)")
    if defn:
        lines += ["", "The study definition as run (budgets were cut only through these config "
                  "overrides; everything else is the project's defaults):", "",
                  "```yaml", defn.rstrip(), "```"]
    return "\n".join(lines)


def _rope_text(spec: DatasetSpec, comp: stats.DatasetComparison, u: Units) -> str:
    ref, ref_name = spec.reference
    conv = (f"{spec.rope:g} of the reference's error" if spec.direction == "minimize"
            else f"{spec.rope:g} in {spec.metric}")
    src = {"default rule": "the default rule, the dataset config has no `rope`"}.get(
        spec.rope_source, f"`rope` from {spec.rope_source}")
    in_skill = skill.rope_in_skill_units(spec.rope, spec.direction, ref)
    ref_txt = (f"the naive baseline, {u.fmt(ref)}" if ref_name == "naive"
               else f"{ref_name} (predicting the test mean), which beats the naive baseline here")
    return (f"Region of practical equivalence: ±{u.fmt(comp.rope) if not u.percent else f'{100 * comp.rope:.2f} points'} "
            f"({conv}; {src}; {_skill_fmt(in_skill).lstrip('+')} in skill). No-skill reference: {ref_txt}.")


def _mde_text(comp: stats.DatasetComparison, u: Units) -> str:
    if not np.isfinite(comp.mde):
        return "Minimum detectable difference: not computable (fewer than two seeds or no variance)."
    fmt = (lambda x: f"{100 * x:.2f} points") if u.percent else u.fmt
    text = (f"Minimum detectable difference at 80% power (two-sided two-sample t-test, alpha = "
            f"{comp.alpha}, {comp.seeds:g} seeds each, pooled seed SD {fmt(comp.pooled_sd)}): "
            f"**{fmt(comp.mde)}**")
    if np.isfinite(comp.rope) and comp.mde > comp.rope:
        text += (f", {comp.mde / comp.rope:.1f} times the ROPE: below that size \"not "
                 "significantly worse\" means \"not enough seeds\", which the Bayesian "
                 "probabilities make explicit.")
    else:
        text += ", within the ROPE: the test resolves practically relevant gaps."
    return text


def _dataset_section(data: StudyData, runs: pd.DataFrame, spec: DatasetSpec,
                     comp: stats.DatasetComparison, an: Analysis, figs: Figures,
                     fetch: Fetch | None, primary: int | None) -> str:
    ds = spec.dataset
    name, direction, u, task = _dataset_meta(runs, ds)
    sec = [f"### {ds}" + (f" (dataset `{name}`)" if name != ds else ""), ""]
    if ds in an.side:
        sec += ["*A side experiment for a reference claim; not part of the verdict or the "
                "comparisons across datasets.*", ""]
    elif ds in an.no_skill:
        sec += ["**No skill**: no candidate beats the no-skill reference by more than the ROPE "
                "(one-sided t-test, Holm-adjusted); the ranks below are noise, so this dataset is "
                "left out of the verdict and of the comparisons across datasets.", ""]
    n_cmp = int(comp.table["p_holm"].notna().sum())
    sec += [
        f"Test {u.label()}, {'higher' if direction == 'maximize' else 'lower'} is better. Mean "
        f"over seeds with a 95% t-interval. *skill* is 1 - error / reference error (0 = the "
        f"no-skill reference, 1 = perfect) with a 95% t-interval; *beats naive* is a one-sided "
        f"t-test of skill beyond the ROPE (Holm-adjusted p). The anchor is the best candidate "
        f"by mean; each other candidate is compared with it by "
        f"{stats.TEST_NAMES[comp.test]} (seeds do not pair runs of different architectures), "
        f"Holm-adjusted over the {n_cmp} comparisons; *P(anchor beats)* is the fraction of seed "
        "pairs the anchor wins; *P(better / equiv. / worse)* are the posterior probabilities that "
        "the architecture's mean is better than the anchor's by more than the ROPE, within it, or "
        "worse by more (unpaired Bayesian comparison, normal model, Jeffreys prior).",
        "",
        _rope_text(spec, comp, u),
        "",
        _mde_text(comp, u),
        "",
        leaderboard(runs, comp, u),
        "",
    ]
    tests_ran = sorted({t for t in comp.table["test"] if t})
    if tests_ran:
        sec += [f"Tests that ran: {', '.join(tests_ran)}.", ""]
    if comp.best_overall != comp.anchor:
        sec += [f"The best mean of all is the reference `{comp.best_overall}`; the anchor is the "
                f"best candidate, `{comp.anchor}`.", ""]
    sec += [f"**Top group** (not significantly worse than `{comp.anchor}` at alpha = "
            f"{comp.alpha}): " + ", ".join(f"`{a}`" for a in comp.top_group) + ".",
            "**Significantly worse**: " + (", ".join(f"`{a}`" for a in comp.significantly_worse)
                                          or "none") + "."]
    if comp.untested:
        sec.append("**Untested** (too few seeds or no variance; not in the top group): "
                   + ", ".join(f"`{a}`" for a in comp.untested) + ".")
    equiv = [t.arch for t in comp.table.itertuples() if np.isfinite(t.p_equivalent)
             and t.p_equivalent >= bayes.BAYES_LEVEL and t.candidate]
    if equiv:
        sec.append(f"**Practically equivalent to `{comp.anchor}`** (P(within the ROPE) >= "
                   f"{bayes.BAYES_LEVEL}): " + ", ".join(f"`{a}`" for a in equiv) + ".")
    top = [a for a in comp.top_group if a not in NOT_CANDIDATES]
    if len(top) >= 3:
        m = stats.pairwise_prob_beats(runs, direction, top)
        rows = [[f"`{a}`"] + ["" if a == b else f"{m.loc[a, b]:.2f}" for b in top] for a in top]
        sec += ["", "P(row beats column) within the top group (fraction of seed pairs):", "",
                _md_table(["", *[f"`{b}`" for b in top]], rows)]
    curves = f"{ds}_curves.png"
    if _curves_figure(data, runs, u, f"{ds}: validation curves (mean over seeds, band = range)",
                      figs.path(curves)):
        sec += ["", f"![learning curves](figures/{curves})"]
    else:
        figs.written.discard(curves)
        if figs.keep(curves):
            sec += ["", "Validation curves (drawn from the MLflow store's per-epoch history, "
                    "which this record does not hold; kept as committed):", "",
                    f"![learning curves](figures/{curves})"]
    if task == "regression":
        # The naive baseline can have the best mean (SBUX): the figure is of the best learned model.
        shown = comp.anchor if comp.anchor not in NOT_CANDIDATES else next(
            (a for a in comp.table["arch"] if a not in NOT_CANDIDATES), comp.anchor)
        best_run = _median_run(runs, shown)
        pred = f"{ds}_predictions.png"
        copied = fetch is not None and fetch(best_run["run_id"], "plots/predictions_vs_actual.png",
                                             figs.path(pred))
        if not copied:
            figs.written.discard(pred)
        if copied or figs.keep(pred):
            sec += ["", f"Test predictions of `{shown}`, the best candidate (seed "
                    f"{best_run['seed']}, the median seed; the run's own plot from MLflow), against "
                    "the actual series and the naive baseline:", "",
                    f"![predictions](figures/{pred})"]
    imp, notes = _tuning(data, ds, primary)
    sec += ["", "#### Tuning and hyperparameter importance", ""]
    if imp:
        sec += [imp]
    else:
        sec += ["No tuning trials in the record for this dataset."]
    if notes:
        sec += [""] + [f"- {n}" for n in notes]
    return "\n".join(sec)


def _skill_means(an: Analysis, all_specs: dict[str, DatasetSpec], datasets: list[str]):
    """Per-run skill scores {dataset: {arch: array}} and the datasets x archs table of means."""
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


def _across(an: Analysis, all_specs: dict[str, DatasetSpec], alpha: float, figs: Figures,
            summary: list[str]) -> str:
    datasets = list(an.in_verdict)
    head = ["## Across datasets", ""]
    left_out = list(an.no_skill) if an.options.exclude_no_skill else []
    entered = (f"**{len(datasets)} of {len(datasets) + len(left_out)} dataset(s) enter the tests "
               "across datasets**")
    if left_out:
        entered += (f"; {len(left_out)} left out for no skill (no candidate beats the no-skill "
                    f"reference by more than the ROPE): {', '.join(f'`{d}`' for d in left_out)}.")
    else:
        entered += "; none is left out for no skill."
    head += [entered, ""]
    if len(datasets) < 1:
        return "\n".join(head + ["No dataset is in the verdict: nothing to compare across datasets."])
    runs_skill, means = _skill_means(an, all_specs, datasets)
    complete = [a for a in means.columns if means[a].notna().all()]
    dropped = sorted(set(means.columns) - set(complete))
    scores = means[sorted(complete)]
    if scores.shape[1] < 2:
        return "\n".join(head + ["Fewer than two architectures ran on every dataset in the verdict."])
    n, k = len(datasets), scores.shape[1]
    directions = dict.fromkeys(scores.index, "maximize")
    ranks = stats.rank_matrix(scores, directions)
    avg = ranks.mean(axis=0)
    order = avg.iloc[np.lexsort((np.array(avg.index, dtype=str), avg.to_numpy(float)))]
    rows = [[f"`{a}`"] + [f"{scores.loc[ds, a]:+.3f} ({ranks.loc[ds, a]:.1f})" for ds in datasets]
            + [f"{order[a]:.2f}"] for a in order.index]
    text = head + [
        f"Scores are skill scores (1 - error / the dataset's no-skill reference error), comparable "
        f"across datasets; the {n} dataset(s) in the verdict: {', '.join(datasets)}. Mean skill "
        "over seeds (rank within the dataset, 1 = best):"
        + (f" Left out because they did not run on every dataset: {', '.join(dropped)}." if dropped else ""),
        "",
        _md_table(["architecture", *datasets, "average rank"], rows),
        "",
    ]
    # Pairwise Wilcoxon-Holm with cliques, drawn as a critical-difference diagram.
    pw = across_mod.wilcoxon_holm(scores)
    cl = across_mod.cliques(order, pw, alpha)
    floor = across_mod.smallest_p(n)
    text += ["### Pairwise Wilcoxon signed-rank tests (Holm), critical-difference diagram", ""]
    sig = [(a, b) for i, a in enumerate(order.index) for b in order.index[i + 1:] if pw.loc[a, b] < alpha]
    text.append(
        f"Over {n} dataset(s) the exact two-sided signed-rank test cannot give p below "
        f"{floor:.3g}" + (f", so at alpha = {alpha} no pair can be separated" if floor >= alpha else "")
        + ". " + ("Significant pairs (Holm): " + ", ".join(f"`{a}` > `{b}`" for a, b in sig) + "."
                  if sig else "No pair differs significantly after Holm's correction."))
    text.append("Cliques (no pair inside differs significantly): "
                + ("; ".join("{" + ", ".join(f"`{a}`" for a in g) + "}" for g in cl) or "none") + ".")
    if n >= 2:
        fig = figures.cd_diagram(order, pw, None, alpha,
                                 f"Average rank over {n} datasets (1 = best); bars: Wilcoxon-Holm cliques")
        figures.save(fig, figs.path("cd_diagram.png"))
        text += ["", "![critical difference diagram](figures/cd_diagram.png)"]
    # Bayesian signed-rank test of the best-ranked architecture against each other.
    best = order.index[0]
    text += ["", "### Bayesian signed-rank test", ""]
    if n >= 2:
        brows = []
        for a in order.index[1:]:
            pr = bayes.signed_rank(scores[best].to_numpy(), scores[a].to_numpy(), skill.SKILL_ROPE)
            brows.append([f"`{best}` vs `{a}`", _pct(pr.better), _pct(pr.equivalent), _pct(pr.worse),
                          pr.decided()])
        text += [f"Benavoli et al. (2017) over the datasets' mean skill, ROPE ±{skill.SKILL_ROPE} "
                 f"skill (1% of the reference's error), prior strength 0.5 at zero difference, "
                 f"{bayes.SIGNED_RANK_SAMPLES:,} posterior samples (seed {bayes.SIGNED_RANK_SEED}); "
                 f"each probability is how often that region is the most probable. With {n} "
                 "datasets the prior weighs heavily.", "",
                 _md_table(["comparison", "P(first better)", "P(equivalent)", "P(second better)",
                            f"decision (>= {bayes.BAYES_LEVEL})"], brows)]
    else:
        text.append("Needs at least two datasets in the verdict.")
    # Aggregates with stratified-bootstrap intervals.
    per_arch = aggregate.by_arch(runs_skill, list(order.index), datasets)
    iqms = {a: aggregate.iqm_interval(per_arch[a]) for a in order.index}
    lead = max(order.index, key=lambda a: (iqms[a].value, -list(order.index).index(a)))
    arows = []
    for a in sorted(order.index, key=lambda a: (-iqms[a].value, a)):
        e = iqms[a]
        poi = (aggregate.improvement_interval(per_arch[lead], per_arch[a]) if a != lead else None)
        arows.append([f"`{a}`", f"{e.value:+.3f} [{e.low:+.3f}, {e.high:+.3f}]",
                      "" if poi is None else f"{poi.value:.2f} [{poi.low:.2f}, {poi.high:.2f}]"])
    summary.append(
        f"Across the {n} dataset(s) in the verdict: "
        + (f"significant Wilcoxon-Holm pairs: {len(sig)}" if sig else
           f"no Wilcoxon-Holm pair differs (smallest attainable p {floor:.3g})")
        + f"; highest interquartile-mean skill `{lead}` {iqms[lead].value:+.3f} "
        f"[{iqms[lead].low:+.3f}, {iqms[lead].high:+.3f}].")
    text += ["", "### Aggregate skill (interquartile mean, probability of improvement)", "",
             f"In the manner of Agarwal et al. (2021): the interquartile mean of all runs' skill "
             f"scores over the datasets in the verdict, and P(`{lead}` beats X), a run of the "
             "highest-IQM architecture against a run of X averaged over datasets; 95% percentile "
             f"intervals from {aggregate.BOOTSTRAP_REPS:,} stratified bootstrap resamples of the "
             f"seeds within each dataset (seed {aggregate.BOOTSTRAP_SEED}).", "",
             _md_table(["architecture", "IQM skill [95% CI]", f"P(`{lead}` beats it) [95% CI]"],
                       arows)]
    # Friedman / Nemenyi, secondary.
    text += ["", "### Friedman / Nemenyi (secondary view)", ""]
    if n >= 2:
        fr = stats.friedman(ranks)
        cd = stats.nemenyi_cd(k, n, alpha)
        note = stats.power_note(k, n, alpha)
        text += [
            f"- Friedman: chi^2_F = {fr.chi2:.2f} (df {fr.df1}), p = {_p(fr.p_chi2) or 'n/a'}; "
            f"Iman-Davenport F_F = {fr.iman_davenport:.2f} (df {fr.df1}, {fr.df2}), "
            f"p = {_p(fr.p_iman_davenport) or 'n/a'}.",
            f"- Nemenyi critical difference at alpha = {alpha}: CD = {cd:.2f} ranks "
            f"(q = {stats.nemenyi_q(k, alpha):.3f}, k = {k}, N = {n}).",
            "", f"**Power caveat.** {note.text}"]
    else:
        text.append("Needs at least two datasets in the verdict.")
    return "\n".join(text)


def _sensitivity_section(sens: sensitivity.Sensitivity) -> str:
    base = sens.baseline.verdict.short
    rows = []
    for label, a in sens.rows:
        rows.append([label, ", ".join(a.in_verdict) or "none", a.verdict.short,
                     "-" if a is sens.baseline else ("same" if a.verdict.short == base else "**changes**")])
    text = ["## Sensitivity of the verdict", "",
            "The whole analysis is recomputed with one choice changed at a time.", "",
            _md_table(["choice", "datasets in the verdict", "verdict", "vs default"], rows,
                      ["l", "l", "l", "l"]), ""]
    if sens.stable:
        text.append("**Stable**: no alternative choice changes the verdict.")
    else:
        text.append("**Unstable**: the verdict changes under " + "; ".join(sens.changers) + ".")
    return "\n".join(text)


def _variance_section(runs: pd.DataFrame) -> str:
    t = variance.table(runs)
    head = ["## Variance beyond seeds", ""]
    if t.empty:
        return "\n".join(head + [
            "The tuning ran once per cell (one sampler seed), so this study measures the spread "
            "over training seeds only; the spread that a different tuning run would add "
            "(Bouthillier et al. 2021) is not measured. `tuning_seeds: [0, 1]` on a dataset of the "
            "study definition repeats its tuning with a second sampler seed and fills this section."])
    rows = [[r.dataset, f"`{r.arch}`", str(r.tuning_seeds), f"{r.training_seeds:g}",
             f"{r.sd_tuning:.4g}", f"{r.sd_training:.4g}", _pct(r.tuning_share)]
            for r in t.itertuples()]
    return "\n".join(head + [
        "Cells tuned with several sampler seeds: one-way random-effects variance components of the "
        "test score (between tuning runs, and between training seeds within a tuning run).", "",
        _md_table(["dataset", "architecture", "tuning seeds", "training seeds per tuning",
                   "SD from tuning", "SD from training seed", "tuning share of variance"], rows)])


def _budget_line(definition: str) -> str:
    """The tuning budget per cell, as the study definition set it."""
    from omegaconf import OmegaConf

    try:
        d = OmegaConf.create(definition) if definition else None
    except Exception:
        d = None
    if d is None or d.get("tuning") is None:
        return "- **Budget per cell**: not recorded (no study session in the store)"
    t = d.tuning
    if int(t.get("n_trials", 0)) == 0:
        tuning = "no tuning (the configurations as given)"
    else:
        tuning = (f"{t.n_trials} tuning trials per architecture on the validation split "
                  f"(sampler {t.get('sampler')}, seed {t.get('seed')}; pruner {t.get('pruner')})")
    repeats = {k: list(v.get("tuning_seeds")) for k, v in (d.get("datasets") or {}).items()
               if v.get("tuning_seeds") and len(v.get("tuning_seeds")) > 1}
    if repeats:
        tuning += "; tuning repeated with sampler seeds " + ", ".join(
            f"{s} on `{k}`" for k, s in sorted(repeats.items()))
    over = ", ".join(f"`{o}`" for o in d.get("overrides") or []) or "none"
    size = {None: "width tuned", False: "width tuned", True: "parameter budget tuned "
            "(equal capacity per trial)"}.get(d.get("match_params"), f"parameter budget "
                                               f"{d.get('match_params')} for every model")
    return (f"- **Budget per cell**: {tuning}; model size: {size}; epochs and batches per "
            f"epoch from the trainer config and these overrides: {over} (per-dataset overrides "
            "in the definition below)")


def _claims_section(data: StudyData) -> str:
    rows = []
    for c in claims_mod.CLAIMS:
        got, _ = claims_mod.measured(data.runs, data.histories, c)
        setup = ", ".join(f"{k}={v}" for k, v in c.where.items())
        rows.append([c.dataset, f"`{c.arch}`", c.what + (f" ({setup})" if setup else ""),
                     c.claimed, c.source, got or f"not run: `{c.command}`"])
    return "\n".join([
        "## Reference claims vs this harness",
        "",
        "Measured values are means over this study's seeds with 95% CIs, under this study's "
        "tuning and budget (see *What was run*), which may differ from the reference setup; the "
        "command runs the reference setup itself.",
        "",
        _md_table(["dataset", "architecture", "quantity", "reference", "source", "this harness"],
                  rows, ["l"] * 6),
    ])


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _primary_tuning_seed(data: StudyData) -> int | None:
    d = _definition(data)
    if d is not None and d.get("tuning") is not None and d.tuning.get("seed") is not None:
        return int(d.tuning.seed)
    seeds = data.runs["tuning_seed"].dropna()
    return int(seeds.min()) if len(seeds) else None


def build_from_record(
    path: Path, out: Path, *, alpha: float = stats.ALPHA, test: str = "welch",
    fetch: Fetch | None = None,
) -> Path:
    """Writes README.md, results.csv and figures into ``out`` from the tidy record alone;
    ``fetch`` copies run artifacts (prediction plots) when the MLflow store is at hand."""
    data = study_data(record.read(path))
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures(out / "figures")
    primary = _primary_tuning_seed(data)
    progress = _progress(data, data.runs)
    runs = _reported_runs(data.runs, primary, progress)
    datasets = sorted(runs["dataset"].unique()) if len(runs) else []
    results_table(data).to_csv(out / "results.csv", index=False, lineterminator="\n")

    side = sorted(_side_datasets(data) & set(datasets))
    all_specs = specs(runs) if len(runs) else {}
    opts = Options(alpha=alpha, test=test)
    an = analyse(all_specs, opts, side)
    cells = _convergence_cells(runs)
    unconverged = set(convergence.not_converged(cells)["dataset"]) - set(side)
    sens = sensitivity.run(all_specs, opts, side, unconverged) if all_specs else None
    per_ds = [_dataset_section(data, runs[runs["dataset"] == ds], all_specs[ds],
                               an.comparisons[ds], an, figs, fetch, primary) for ds in datasets]
    summary: list[str] = []
    across_text = _across(an, all_specs, alpha, figs, summary)
    verdict_text = _verdict_lines(data.study, runs, an, progress, side, cells, summary, sens,
                                  alpha, test)
    doc = _readme_lines(data, datasets, verdict_text, per_ds, cells, across_text, sens)
    figs.prune()
    text = record.relative_paths(mask("\n".join(doc)))
    (out / "README.md").write_text(text, encoding="utf-8")
    return out


def _reported_runs(all_runs: pd.DataFrame, primary: int | None,
                   progress: Progress | None) -> pd.DataFrame:
    """The final runs the tables use: a repeated tuning would otherwise count its cell twice,
    and a dataset still running would enter the verdict with only some of its seeds."""
    runs = all_runs[all_runs["tuning_seed"].isna() | (all_runs["tuning_seed"] == primary)] \
        if primary is not None else all_runs
    if progress is not None and progress.partial:
        runs = runs[runs["dataset"].isin(progress.complete)]
    return runs


def _convergence_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Convergence per cell of the learned models; the naive baseline does not train."""
    learned = runs[runs["arch"] != "naive"] if len(runs) else runs
    return convergence.table(learned)


def _no_skill_lines(runs: pd.DataFrame, an: Analysis) -> list[str]:
    """Says which datasets the verdict leaves out, with the numbers that justify it."""
    if not an.no_skill:
        return []
    lines = ["Left out of the verdict for **no skill** (no candidate beats the "
             "no-skill reference by more than the ROPE; their ranks are noise):"]
    for ds in an.no_skill:
        c = an.comparisons[ds]
        u = _dataset_meta(runs, ds)[2]
        best = c.table.set_index("arch").loc[c.anchor]
        lines.append(
            f"- {ds}: best candidate `{c.anchor}` {u.fmt(best['mean'])} against the reference "
            f"{u.fmt(c.reference)}, skill {_skill_fmt(best['skill'])}.")
    lines.append("")
    return lines


def _convergence_line(cells: pd.DataFrame) -> str:
    """A rank partly measures convergence speed where a cell did not converge; the verdict
    says which."""
    ok, judged, unknown = convergence.summary(cells)
    not_conv = convergence.not_converged(cells)
    return (
        f"Convergence: {ok} of {judged} judged cells converged"
        + (f" ({unknown} could not be judged: no per-epoch curve recorded)" if unknown else "")
        + ("; not converged: " + ", ".join(f"{r.dataset} `{r.arch}`"
                                           for r in not_conv.itertuples())
           + " (their ranks partly measure convergence speed)" if len(not_conv) else "")
        + " (see *Convergence*).")


def _verdict_lines(
    study: str, runs: pd.DataFrame, an: Analysis, progress: Progress | None, side: list[str],
    cells: pd.DataFrame, summary: list[str], sens: sensitivity.Sensitivity | None,
    alpha: float, test: str,
) -> list[str]:
    """The verdict with every caveat that bounds it, from the tables the README prints."""
    v = an.verdict
    verdict_text = [v.text, ""]
    if progress is not None and progress.partial:
        verdict_text = [progress.text(study), "", *verdict_text]
    verdict_text += _no_skill_lines(runs, an)
    if side:
        verdict_text += ["Not in the verdict (run for a reference claim only): "
                         + ", ".join(f"`{d}`" for d in side) + ".", ""]
    verdict_text.append(_convergence_line(cells))
    verdict_text.append("")
    verdict_text += [*summary, ""] if summary else []
    if sens is not None:
        verdict_text.append(
            "**Stable** under every alternative of the sensitivity table." if sens.stable else
            "**Unstable**: the verdict changes under " + "; ".join(sens.changers)
            + " (see *Sensitivity of the verdict*).")
        verdict_text.append("")
    verdict_text.append(
        "The verdict is computed: per dataset the anchor is the best candidate by mean (the naive "
        "baseline is a reference, not a candidate), and an architecture is the single best only if "
        "it is in the top group (not significantly worse than the anchor, "
        f"{stats.TEST_NAMES[test]}, Holm correction, alpha = {alpha}) on every dataset with skill, "
        "and no other candidate is.")
    return verdict_text


def _readme_lines(
    data: StudyData, datasets: list[str], verdict_text: list[str], per_ds: list[str],
    cells: pd.DataFrame, across_text: str, sens: sensitivity.Sensitivity | None,
) -> list[str]:
    """The README's lines in reading order: the verdict first, the evidence after it."""
    study = data.study
    doc = [
        f"# Study `{study}`: is there a single best recurrent model?",
        "",
        f"Generated by `python -m bench.report` from the tidy record `{record.RECORD_NAME}/` beside "
        "this file; regenerating from the same record gives this file byte for byte.",
        "",
        "## Verdict",
        "",
        *verdict_text,
        "",
        _what_was_run(data, datasets, study),
        "",
        "## Per dataset",
        "",
    ]
    skipped = _skipped(data)
    if skipped:
        doc += [skipped, ""]
    doc += [
        "\n\n".join(per_ds) if per_ds else "No final runs yet.",
        "",
        convergence.section(cells),
        "",
        across_text,
        "",
        _sensitivity_section(sens) if sens is not None else "",
        "",
        _variance_section(data.runs),
        "",
        _claims_section(data),
        "",
        "## Files",
        "",
        f"- `{record.RECORD_NAME}/`: the tidy record, one row per run (sessions with the study "
        "definition, tuning trials with their parameters and per-epoch objective, final runs with "
        "config, per-epoch curves, test metrics, environment and MLflow run id), one file per "
        "dataset and one for its tuning trials; the report is built from it alone.",
        "- `results.csv`: one row per final run (dataset, architecture, seed, score in the "
        "dataset's units, every logged metric, the tuned parameters, MLflow run id).",
        "- `figures/`: learning curves, prediction plots, the critical-difference diagram.",
        "",
    ]
    return doc


def _store_fetch(uri: str) -> Fetch:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=StoreAddress.tracking(uri).connect())

    def fetch(run_id: str, artifact: str, dest: Path) -> bool:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return read_artifact(client, run_id, artifact, lambda p: shutil.copyfile(p, dest)) is not None

    return fetch


def build(
    study: str, uri: str, out: Path, *, alpha: float = stats.ALPHA, test: str = "welch",
    storage: str | None = None, keep: bool = True,
) -> Path:
    """From the stores: writes the record ``out/record/``, then builds the report from it.

    With ``keep`` (the default) runs of the existing record in ``out`` that the stores lack
    stay in it: a study resumed on another machine or from a fresh clone has its earlier
    sessions only there."""
    path = out / record.RECORD_NAME
    existing = record.locate(out) if keep else None
    committed = record.read(existing) if existing is not None else None
    try:
        fresh = record.from_store(uri, study, storage=storage)
    except LookupError:
        if committed is None:
            raise
        fresh = None
    rec = record.write(record.merge(fresh, committed), path)
    return build_from_record(rec, out, alpha=alpha, test=test, fetch=_store_fetch(uri))


@dataclass
class Progress:
    """How much of the study definition's plan the record holds."""

    planned: dict[str, int]     # dataset -> final runs planned (cells x seeds)
    recorded: dict[str, int]    # dataset -> final runs recorded

    @property
    def complete(self) -> list[str]:
        return sorted(d for d, n in self.planned.items() if self.recorded.get(d, 0) >= n)

    @property
    def partial(self) -> bool:
        return len(self.complete) < len(self.planned)

    def text(self, study: str) -> str:
        done, total = sum(min(self.recorded.get(d, 0), n) for d, n in self.planned.items()), \
            sum(self.planned.values())
        started = sorted(d for d in self.planned if 0 < self.recorded.get(d, 0) < self.planned[d])
        waiting = sorted(d for d in self.planned if self.recorded.get(d, 0) == 0)
        parts = [f"**The study is not finished**: {done} of {total} planned final runs are "
                 f"recorded; {len(self.complete)} of {len(self.planned)} datasets are complete "
                 "and only they enter the tables and the verdict below."]
        if started:
            parts.append("In progress: " + ", ".join(
                f"`{d}` ({self.recorded[d]}/{self.planned[d]})" for d in started) + ".")
        if waiting:
            parts.append("Not started: " + ", ".join(f"`{d}`" for d in waiting) + ".")
        parts.append(f"`python -m bench.study sweeps/study_{study}.yaml` resumes it (from this "
                     f"record on a machine without the stores), then `python -m bench.report "
                     f"--study {study}`.")
        return " ".join(parts)


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
        seeds = plan.seeds_of(c.dataset)
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


def _skipped(data: StudyData) -> str:
    """Datasets the definition lists but did not run (e.g. Jena needs its download)."""
    d = _definition(data)
    if d is None:
        return ""
    items = [f"- `{k}`: not run ({v.get('needs', 'disabled in the study definition')})"
             for k, v in (d.get("datasets") or {}).items() if not v.get("enabled", True)]
    return "\n".join(["Datasets listed but not run:", "", *items]) if items else ""
