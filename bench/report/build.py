"""Builds ``reports/<study>/``: README.md, results.csv and figures, all from the MLflow store.

Every number in the README is computed here from the runs, and the verdict comes from the same
tables the README prints, so the prose cannot disagree with the evidence. Nothing depends on
when or where the report is generated: regenerating from the same store gives the same bytes.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import tracking
from bench.report import claims as claims_mod
from bench.report import figures, stats
from bench.report.collect import StudyData, load, read_artifact, results_table

NOT_RANKED = ("naive",)      # a reference point, not a contender: it only widens rank gaps
NOT_CANDIDATES = ("naive",)


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


def _naive_gain(r: pd.Series, direction: str) -> float:
    m = r["metric"]
    col = f"metric:test/naive_{m}_units" if r["value_units"] else f"metric:test/naive_{m}"
    naive = r.get(col)
    if naive is None or pd.isna(naive):
        return math.nan
    if direction == "minimize":
        return 100 * (naive - r["value"]) / naive if naive else math.nan
    return r["value"] - naive


def _gain_fmt(g: float, direction: str, u: Units) -> str:
    if not np.isfinite(g):
        return "n/a"
    if direction == "minimize":
        return f"{g:.1f}% lower error" if g >= 0 else f"{-g:.1f}% higher error"
    if u.percent:
        return f"{100 * g:+.2f} pts"
    return f"{g:+.3g}"


def _num(runs: pd.DataFrame, col: str) -> float:
    if col not in runs.columns:
        return math.nan
    v = pd.to_numeric(runs[col], errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def leaderboard(runs: pd.DataFrame, comp: stats.DatasetComparison, u: Units) -> str:
    rows = []
    for i, t in enumerate(comp.table.itertuples(index=False), start=1):
        a = runs[runs["arch"] == t.arch]
        params = _num(a, "param:n_params")
        epoch_s = _num(a, "metric:time/mean_epoch_s")
        gain = float(np.nanmean([_naive_gain(r, comp.direction) for _, r in a.iterrows()]))
        ci = "" if not np.isfinite(t.ci_low) else f"[{u.fmt(t.ci_low)}, {u.fmt(t.ci_high)}]"
        group = "best" if i == 1 else ("top group" if t.in_top_group else "worse")
        rows.append([
            str(i), f"`{t.arch}`", u.fmt(t.mean), ci, str(t.n),
            "n/a" if not np.isfinite(params) else f"{params:,.0f}",
            "n/a" if not np.isfinite(epoch_s) else f"{epoch_s:.2f}",
            "reference" if t.arch == "naive" else _gain_fmt(gain, comp.direction, u), _p(t.p_holm),
            "" if not np.isfinite(t.p_best_beats) else f"{t.p_best_beats:.2f}", group,
        ])
    header = ["#", "architecture", f"test {u.label()}", "95% CI", "seeds", "params",
              "s / epoch", "vs naive", "p vs best (Holm)", "P(best beats)", "group"]
    return _md_table(header, rows, ["r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "l"])


def _median_run(runs: pd.DataFrame, arch: str) -> pd.Series:
    a = runs[runs["arch"] == arch].sort_values("seed")
    med = float(np.median(a["value"]))
    idx = (a["value"] - med).abs().to_numpy().argmin()
    return a.iloc[int(idx)]


def _prediction_figure(data: StudyData, run: pd.Series, dest: Path) -> bool:
    from mlflow.tracking import MlflowClient

    dest.parent.mkdir(parents=True, exist_ok=True)
    copied = read_artifact(MlflowClient(tracking_uri=data.uri), run["run_id"],
                           "plots/predictions_vs_actual.png", lambda p: shutil.copyfile(p, dest))
    return copied is not None


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


def _importance(data: StudyData, ds: str, storage_override: str | None) -> tuple[str, list[str]]:
    """fANOVA importances per architecture, read from the Optuna storage the runs name."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = data.runs[data.runs["dataset"] == ds]
    col_s, col_n = "tag:optuna_storage", "tag:optuna_study"
    if col_n not in runs.columns:
        return "", ["No tuning record (Optuna study names) on these runs."]
    cells = (runs[["arch", col_n, col_s]].dropna(subset=[col_n]).drop_duplicates("arch")
             .sort_values("arch"))
    per_arch: dict[str, dict[str, float]] = {}
    budget_rows, notes = [], []
    for arch, name, storage in cells.itertuples(index=False):
        storage = storage_override or storage
        if not storage or "***" in str(storage):
            notes.append(f"`{arch}`: storage password masked; pass --storage to read it.")
            continue
        try:
            st = optuna.load_study(study_name=name, storage=storage)
        except Exception as exc:
            notes.append(f"`{arch}`: Optuna study `{name}` not readable ({type(exc).__name__}).")
            continue
        trials = st.get_trials(deepcopy=False)
        count = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
        budget_rows.append([f"`{arch}`", str(len(trials)), str(count["COMPLETE"]),
                            str(count["PRUNED"]), str(count["FAIL"])])
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        if len(complete) < 2:
            notes.append(f"`{arch}`: fewer than 2 complete trials, no importance estimate.")
            continue
        try:
            imp = optuna.importance.get_param_importances(
                st, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
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


def _what_was_run(data: StudyData, datasets: list[str]) -> str:
    r = data.runs
    lines = ["## What was run", ""]
    defn = data.definition
    archs = sorted(r["arch"].unique()) if len(r) else []
    seeds = sorted(int(s) for s in r["seed"].unique()) if len(r) else []
    lines.append(f"- **Datasets** ({len(datasets)}): " + ", ".join(
        f"`{d}` ({_dataset_meta(r, d)[2].label()}, {_dataset_meta(r, d)[1]})" for d in datasets))
    lines.append(f"- **Architectures** ({len(archs)}): " + ", ".join(f"`{a}`" for a in archs))
    lines.append(_budget_line(defn))
    lines.append(f"- **Seeds** per architecture: {len(seeds)} ({', '.join(map(str, seeds))}); "
                 "each final run is tested once, on the test split, after restoring its best "
                 "validation checkpoint.")
    if len(data.sessions):
        hw = sorted(set(data.sessions["tag:hardware"].dropna()))
        lines.append("- **Hardware**: " + "; ".join(hw))
        wall = (data.sessions["end_ms"] - data.sessions["start_ms"]).dropna().sum() / 1000
        lines.append(f"- **Wall time** of the study command(s): {_seconds(wall)} over "
                     f"{len(data.sessions)} session(s)")
    others = data.all_runs[data.all_runs["phase"] != "session"]
    compute = (others["end_ms"] - others["start_ms"]).dropna().sum() / 1000
    trials = int((~data.all_runs["phase"].isin(["session", "final", "baseline", "tune"])).sum())
    lines.append(f"- **Runs** in MLflow: {len(r)} final runs, {trials} tuning trials; summed run "
                 f"time {_seconds(compute)}")
    if len(data.sessions):
        cmds = list(dict.fromkeys(data.sessions["tag:command"].dropna()))
        lines.append("- **Command**: " + "; ".join(f"`{c}`" for c in cmds))
        uri = data.sessions.iloc[-1].get("tag:tracking_uri")
        if isinstance(uri, str):
            lines.append(f"- **MLflow store**: `{uri}`; Optuna storage: "
                         f"`{data.sessions.iloc[-1].get('tag:optuna_storage')}`")
    lines.append(f"- **Report**: `python -m bench.report --study {data.study}`")
    if defn:
        lines += ["", "The study definition as run (budgets were cut only through these config "
                  "overrides; everything else is the project's defaults):", "",
                  "```yaml", defn.rstrip(), "```"]
    return "\n".join(lines)


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
    over = ", ".join(f"`{o}`" for o in d.get("overrides") or []) or "none"
    size = {None: "width tuned", False: "width tuned", True: "parameter budget tuned "
            "(equal capacity per trial)"}.get(d.get("match_params"), f"parameter budget "
                                               f"{d.get('match_params')} for every model")
    return (f"- **Budget per cell**: {tuning}; model size: {size}; epochs and batches per "
            f"epoch from the trainer config and these overrides: {over} (per-dataset overrides "
            "in the definition below)")


def _across(comps: dict[str, stats.DatasetComparison], alpha: float, fig_dir: Path) -> tuple[str, bool]:
    if len(comps) < 2:
        return ("## Across datasets\n\nOnly one dataset has final runs: no across-dataset "
                "comparison."), False
    means = {ds: c.table.set_index("arch")["mean"] for ds, c in comps.items()}
    scores = pd.DataFrame(means).T
    complete = [a for a in scores.columns if scores[a].notna().all() and a not in NOT_RANKED]
    dropped = sorted(set(scores.columns) - set(complete) - set(NOT_RANKED))
    scores = scores[sorted(complete)]
    if scores.shape[1] < 2:
        return "## Across datasets\n\nFewer than two architectures ran on every dataset.", False
    directions = {ds: c.direction for ds, c in comps.items()}
    ranks = stats.rank_matrix(scores, directions)
    fr = stats.friedman(ranks)
    n, k = fr.n_datasets, fr.k
    cd = stats.nemenyi_cd(k, n, alpha)
    pv = stats.nemenyi_pvalues(fr.average_ranks, n)
    note = stats.power_note(k, n, alpha)
    order = fr.average_ranks.sort_values(kind="stable")
    order = order.iloc[np.lexsort((np.array(order.index), order.to_numpy()))]
    rows = [[f"`{a}`"] + [f"{ranks.loc[ds, a]:.1f}" for ds in ranks.index] + [f"{order[a]:.2f}"]
            for a in order.index]
    table = _md_table(["architecture", *ranks.index, "average rank"], rows)
    best = order.index[0]
    sig_worse = [a for a in order.index[1:] if pv.loc[best, a] < alpha]
    fig = figures.cd_diagram(fr.average_ranks, pv, cd, alpha,
                             f"Average rank over {n} datasets (1 = best); CD = {cd:.2f}")
    figures.save(fig, fig_dir / "cd_diagram.png")
    text = [
        "## Across datasets",
        "",
        "Each dataset ranks the architectures by their mean test score over seeds (1 = best, ties "
        "share the average rank); the naive baseline is left out (it would only widen the gaps)."
        + (f" Left out because they did not run on every dataset: {', '.join(dropped)}." if dropped else ""),
        "",
        table,
        "",
        f"- Friedman: chi^2_F = {fr.chi2:.2f} (df {fr.df1}), p = {_p(fr.p_chi2) or 'n/a'}; "
        f"Iman-Davenport F_F = {fr.iman_davenport:.2f} (df {fr.df1}, {fr.df2}), "
        f"p = {_p(fr.p_iman_davenport) or 'n/a'}.",
        f"- Nemenyi critical difference at alpha = {alpha}: CD = {cd:.2f} ranks "
        f"(q = {stats.nemenyi_q(k, alpha):.3f}, k = {k}, N = {n}). "
        + (f"`{best}` (best average rank) is significantly better than: "
           + ", ".join(f"`{a}`" for a in sig_worse) + "." if sig_worse else
           f"No architecture's average rank differs from `{best}`'s by more than CD."),
        "",
        "![critical difference diagram](figures/cd_diagram.png)",
        "",
        f"**Power caveat.** {note.text}",
    ]
    return "\n".join(text), True


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
# Entry point
# ---------------------------------------------------------------------------------------------


def build(
    study: str, uri: str, out: Path, *, alpha: float = stats.ALPHA, test: str = "t",
    storage: str | None = None,
) -> Path:
    data = load(uri, study)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    if fig_dir.exists():
        for p in fig_dir.glob("*.png"):
            p.unlink()
    runs = data.runs
    datasets = sorted(runs["dataset"].unique()) if len(runs) else []
    results_table(data).to_csv(out / "results.csv", index=False, lineterminator="\n")

    comps: dict[str, stats.DatasetComparison] = {}
    per_ds: list[str] = []
    for ds in datasets:
        r = runs[runs["dataset"] == ds]
        name, direction, u, task = _dataset_meta(runs, ds)
        comp = stats.compare_dataset(r, direction, dataset=ds, alpha=alpha, test=test)
        comps[ds] = comp
        sec = [f"### {ds}" + (f" (dataset `{name}`)" if name != ds else ""), ""]
        if ds in _side_datasets(data):
            sec += ["*A side experiment for a reference claim; not part of the verdict or the "
                    "ranks across datasets.*", ""]
        sec += [
               f"Test {u.label()}, {'higher' if direction == 'maximize' else 'lower'} is better. "
               f"Mean over seeds with a 95% t-interval; *vs naive* compares each run with the naive "
               f"baseline on the same test windows; p-values compare each architecture with the best "
               f"mean ({comp.test if comp.test != 't' else 'paired t-test across seeds'}, "
               f"Holm-adjusted over the {len(comp.table) - 1} comparisons); *P(best beats)* is the "
               "fraction of seed pairs in which the best architecture's run scores better.", "",
               leaderboard(r, comp, u), "",
               f"**Top group** (not significantly worse than `{comp.best}` at alpha = {alpha}): "
               + ", ".join(f"`{a}`" for a in comp.top_group) + ".",
               "**Significantly worse**: " + (", ".join(f"`{a}`" for a in comp.significantly_worse)
                                             or "none") + "."]
        top = [a for a in comp.top_group if a not in NOT_CANDIDATES]
        if len(top) >= 3:
            m = stats.pairwise_prob_beats(r, direction, top)
            rows = [[f"`{a}`"] + ["" if a == b else f"{m.loc[a, b]:.2f}" for b in top] for a in top]
            sec += ["", "P(row beats column) within the top group (fraction of seed pairs):", "",
                    _md_table(["", *[f"`{b}`" for b in top]], rows)]
        if _curves_figure(data, r, u, f"{ds}: validation curves (mean over seeds, band = range)",
                          fig_dir / f"{ds}_curves.png"):
            sec += ["", f"![learning curves]({'figures/' + ds + '_curves.png'})"]
        if task == "regression":
            # The naive baseline can have the best mean (SBUX); plotting it against itself
            # would show nothing, so the figure is of the best learned model.
            shown = next((a for a in comp.table["arch"] if a not in NOT_CANDIDATES), comp.best)
            best_run = _median_run(r, shown)
            if _prediction_figure(data, best_run, fig_dir / f"{ds}_predictions.png"):
                sec += ["", f"Test predictions of `{shown}`, the best learned model (seed "
                        f"{best_run['seed']}, the median seed), against the actual series and "
                        "the naive baseline:", "",
                        f"![predictions]({'figures/' + ds + '_predictions.png'})"]
        imp, notes = _importance(data, ds, storage)
        if imp or notes:
            sec += ["", "#### Tuning and hyperparameter importance"]
            sec += ["", imp] if imp else []
            sec += [""] + [f"- {n}" for n in notes] if notes else []
        per_ds.append("\n".join(sec))

    side = _side_datasets(data)
    main = {ds: c for ds, c in comps.items() if ds not in side}
    candidates = sorted({a for c in main.values() for a in c.table["arch"]} - set(NOT_CANDIDATES))
    v = stats.verdict(list(main.values()), candidates=candidates)
    across, _ = _across(main, alpha, fig_dir)
    if side:
        v.text += ("\n\nNot in the verdict (run for a reference claim only): "
                   + ", ".join(f"`{d}`" for d in sorted(side)) + ".")

    doc = [
        f"# Study `{study}`: is there a single best recurrent model?",
        "",
        "Generated by `python -m bench.report` from the MLflow runs tagged "
        f"`study={study}`; regenerating from the same store gives this file byte for byte.",
        "",
        "## Verdict",
        "",
        v.text,
        "",
        "The verdict is computed: an architecture is the single best only if it is in the top "
        "group (not significantly worse than the best mean, paired t-test across seeds with Holm "
        f"correction, alpha = {alpha}) on every dataset; the naive baseline is not a candidate.",
        "",
        _what_was_run(data, datasets),
        "",
        "## Per dataset",
        "",
        "\n\n".join(per_ds) if per_ds else "No final runs yet.",
        "",
        across,
        "",
        _claims_section(data),
        "",
        "## Files",
        "",
        "- `results.csv`: one row per final run (dataset, architecture, seed, score in the "
        "dataset's units, every logged metric, the tuned parameters, MLflow run id).",
        "- `figures/`: learning curves, prediction plots, the critical-difference diagram.",
        "",
    ]
    skipped = _skipped(data)
    if skipped:
        doc[doc.index("## Per dataset") + 1:doc.index("## Per dataset") + 1] = ["", skipped]
    text = "\n".join(doc)
    (out / "README.md").write_text(tracking.mask_secrets(text), encoding="utf-8")
    return out


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
