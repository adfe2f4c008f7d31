"""``python -m bench.report.run_card``: a reference experiment's runs as a committed card.

Reference-setup runs (``+experiment=mnist_gru`` and friends) answer "does the harness
reproduce the tutorial's number?". A card is written from the runs in MLflow, never by hand:
every seed's result, the mean with a 95% t-interval, the claim the experiment config states
(``reference:`` block: source, claim, metric, value, tolerance) and whether the runs meet it,
the naive baseline on the same test rows, and the learning curves of the median seed.

    python -m bench -m +experiment=samsung_lstm_close seed=0,1,2,3,4
    python -m bench.report.run_card --experiment samsung_lstm_close

Each card also writes ``card.json``, from which ``python -m bench.report.run_card --table``
regenerates the claims table (``reports/runs/README.md`` and the README's results section)
without the store, which is local to the machine that ran the card.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
from pathlib import Path

from bench import plots, tracking
from bench.report.figures import save
from bench.report.stats import t_interval
from bench.stores import StoreAddress

RUNS_DIR = Path("reports/runs")
README = Path("README.md")
TABLE_START, TABLE_END = "<!-- claims:start -->", "<!-- claims:end -->"


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(i, m.value) for i, m in enumerate(
        sorted(client.get_metric_history(run_id, key), key=lambda m: m.step))]


# overrides that do not change what a run measures: where it is recorded, how it prints
_NEUTRAL = re.compile(r"^(seed|tracking\.[\w.]+|trainer\.enable_progress_bar|data_dir|"
                      r"hydra\.[\w.]+|run_name)=")


def variant(run, name: str) -> str | None:
    """The overrides a run added to ``+experiment=<name>`` ('' for the experiment as it is),
    or None when the run is not one of the experiment's."""
    try:
        words = shlex.split(run.data.tags.get("command", ""))
    except ValueError:
        return None
    if f"+experiment={name}" not in words:
        return None
    extra = [w for w in words[words.index(f"+experiment={name}") + 1:]
             if not _NEUTRAL.match(w) and w != "-m"]
    return " ".join(sorted(extra))


def experiment_runs(client, name: str) -> dict[str, list]:
    """FINISHED runs of the experiment by variant ('' first), the latest run of each seed."""
    groups: dict[str, dict[str, object]] = {}
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                  max_results=5000)
        for r in sorted(runs, key=lambda r: r.info.start_time):
            v = variant(r, name)
            if v is not None:
                groups.setdefault(v, {})[r.data.tags.get("seed", "")] = r
    return {v: sorted(g.values(), key=lambda r: int(r.data.tags.get("seed") or 0))
            for v, g in sorted(groups.items())}


def _num(params: dict, key: str) -> float | None:
    v = params.get(key)
    try:
        return None if v in (None, "None", "") else float(v)
    except ValueError:
        return None


def judge(mean: float, value: float | None, tolerance: float | None, direction: str) -> str:
    """``met`` when the mean lies within the tolerance of the claim; else by how much and
    which way (better or worse than the claim, in the metric's direction)."""
    if value is None or not math.isfinite(mean):
        return "no number claimed"
    diff = mean - value
    if tolerance is not None and abs(diff) <= tolerance + 1e-9:  # a claim's edge is inside
        return f"met (within {tolerance:g})"
    better = diff > 0 if direction == "maximize" else diff < 0
    return f"missed: {'above' if diff > 0 else 'below'} the claim by {abs(diff):.4g} " + (
        "(better)" if better else "(worse)")


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return ""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4f}"


def card_data(client, name: str) -> dict:
    groups = experiment_runs(client, name)
    runs = groups.get("", [])
    if not runs:
        raise SystemExit(f"no FINISHED run of +experiment={name} in the store; run "
                         f"`python -m bench -m +experiment={name} seed=0,1,2,3,4` first")
    first = runs[0]
    params, tags = first.data.params, first.data.tags
    metric_key = params.get("reference.metric") or f"test/{tags.get('metric', 'accuracy')}"
    direction = tags.get("direction", "maximize")
    naive_key = (metric_key.replace("best/val_", "val/naive_", 1) if metric_key.startswith(
        "best/val_") else metric_key.replace("test/", "test/naive_", 1))
    seeds = []
    for r in runs:
        m = r.data.metrics
        seeds.append({
            "seed": int(r.data.tags.get("seed") or 0), "run_id": r.info.run_id,
            "value": m.get(metric_key, math.nan), "naive": m.get(naive_key, math.nan),
            "best_val": m.get(f"best/val_{r.data.tags.get('metric', 'accuracy')}", math.nan),
            "test": m.get(f"test/{r.data.tags.get('metric', 'accuracy')}", math.nan),
            "epochs": int(m.get("epochs_trained", 0)),
            "wall_s": m.get("time/wall_s", (r.info.end_time - r.info.start_time) / 1000),
        })
    iv = t_interval([s["value"] for s in seeds])
    naive = t_interval([s["naive"] for s in seeds])
    test = t_interval([s["test"] for s in seeds])
    variants = []
    for v, vruns in groups.items():
        if not v:
            continue
        vi = t_interval([r.data.metrics.get(metric_key, math.nan) for r in vruns])
        vn = t_interval([r.data.metrics.get(naive_key, math.nan) for r in vruns])
        epochs = t_interval([r.data.metrics.get("epochs_trained", math.nan) for r in vruns])
        variants.append({"overrides": v, "n": vi.n, "mean": vi.mean, "low": vi.low,
                         "high": vi.high, "naive": vn.mean, "epochs": epochs.mean})
    value, tol = _num(params, "reference.value"), _num(params, "reference.tolerance")
    return {
        "experiment": name, "dataset": params.get("dataset.name"), "arch": tags.get("arch"),
        "source": params.get("reference.source") or "", "claim": params.get("reference.claim")
        or "", "metric": metric_key, "direction": direction, "value": value, "tolerance": tol,
        "n": iv.n, "mean": iv.mean, "low": iv.low, "high": iv.high, "naive": naive.mean,
        "test_metric": f"test/{tags.get('metric', 'accuracy')}", "test_mean": test.mean,
        "test_low": test.low, "test_high": test.high,
        "verdict": judge(iv.mean, value, tol, direction),
        "command": f"python -m bench -m +experiment={name} seed="
                   + ",".join(str(s["seed"]) for s in seeds),
        "setup": {k: params.get(k) for k in (
            "model.impl", "model.hidden_size", "model.init", "batch_size", "optim.name",
            "optim.lr", "trainer.max_epochs", "trainer.early_stopping_patience")},
        "n_params": int(float(params.get("n_params", 0) or 0)),
        "hardware": tags.get("hardware", "not recorded"), "git_sha": tags.get("git_sha", ""),
        "seeds": seeds, "variants": variants,
    }


def _card_text(d: dict, note: str) -> str:
    s = d["setup"]
    lines = [
        f"# {d['experiment']}",
        "",
        f"- Reproduces: {d['source'] or 'no published source'}; claim: {d['claim'] or 'none'}",
        f"- Command: `{d['command']}`, then `python -m bench.report.run_card --experiment "
        f"{d['experiment']}`",
        f"- Data: `{d['dataset']}` from `BENCH_DATA_DIR`; model {d['arch']} "
        f"({s['model.impl'] or '-'} implementation, hidden {s['model.hidden_size']}, init "
        f"{s['model.init'] or '-'}), {d['n_params']:,} parameters",
        f"- Budget: up to {s['trainer.max_epochs']} epochs (early stopping patience "
        f"{s['trainer.early_stopping_patience']}), batch {s['batch_size']}, {s['optim.name']} "
        f"lr {s['optim.lr']}; the best validation epoch's weights are tested",
        f"- Hardware: {d['hardware']}; code `{d['git_sha']}`",
        "",
        f"**{d['metric']}: {_fmt(d['mean'])} [{_fmt(d['low'])}, {_fmt(d['high'])}]** (mean and "
        f"95% t-interval over {d['n']} seeds); naive baseline on the same rows "
        f"{_fmt(d['naive'])}. Claim: {d['claim'] or 'none'} -> **{d['verdict']}**.",
        "",
    ]
    if d["metric"] != d["test_metric"]:
        lines += [f"The claim is read on the validation split, which also selects the epoch "
                  f"(as the reference does), so it is optimistic; the same checkpoints score "
                  f"{d['test_metric']} {_fmt(d['test_mean'])} [{_fmt(d['test_low'])}, "
                  f"{_fmt(d['test_high'])}] on the untouched test split.", ""]
    lines += [
        f"| seed | {d['metric']} | naive | best validation | {d['test_metric']} | epochs | wall s "
        "| MLflow run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in d["seeds"]:
        lines.append(f"| {r['seed']} | {_fmt(r['value'])} | {_fmt(r['naive'])} | "
                     f"{_fmt(r['best_val'])} | {_fmt(r['test'])} | {r['epochs']} | "
                     f"{r['wall_s']:.0f} | "
                     f"`{r['run_id'][:12]}` |")
    if d["variants"]:
        lines += ["", "Variants (the same experiment with overrides, from the same store): what "
                  "each difference from the reference setup costs or gains.", "",
                  f"| overrides | {d['metric']} (mean [95% CI]) | seeds | naive | mean epochs |",
                  "|---|---|---|---|---|"]
        for v in d["variants"]:
            ci = "" if not math.isfinite(v["low"]) else f" [{_fmt(v['low'])}, {_fmt(v['high'])}]"
            lines.append(f"| `{v['overrides']}` | {_fmt(v['mean'])}{ci} | {v['n']} | "
                         f"{_fmt(v['naive'])} | {v['epochs']:.0f} |")
    if note:
        lines += ["", note.strip()]
    lines += ["", "Learning curves of the median seed:", "",
              "![learning curves](learning_curves.png)", ""]
    return "\n".join(lines)


def write_card(uri: str, name: str, out: Path, note_file: Path | None = None) -> str:
    client = tracking.client_for(StoreAddress.tracking(uri))
    d = card_data(client, name)
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(d["seeds"], key=lambda r: (r["value"], r["seed"]))
    median = ordered[(len(ordered) - 1) // 2]
    metric = client.get_run(median["run_id"]).data.tags.get("metric", "accuracy")
    history = {k: _history(client, median["run_id"], k)
               for k in ("train/loss", "val/loss", f"val/{metric}", f"val/naive_{metric}")}
    save(plots.learning_curves({k: v for k, v in history.items() if v}, metric),
         out / "learning_curves.png")
    note = note_file.read_text() if note_file and note_file.exists() else ""
    text = _card_text(d, note)
    (out / "README.md").write_text(text)
    (out / "card.json").write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    return text


# ------------------------------------------------------------------------- claims table


def _legacy_card(readme: Path) -> dict | None:
    """A single-run card written before ``card.json`` existed: its table read back."""
    text = readme.read_text()
    m = re.search(r"^\| accuracy \| ([0-9.]+) \| ([0-9.]+) \|", text, re.M)
    cmd = re.search(r"Command: `([^`]+)`", text)
    if not m:
        return None
    name = readme.parent.name
    return {"experiment": name, "metric": "test/accuracy", "mean": float(m.group(1)),
            "low": math.nan, "high": math.nan, "n": 1, "naive": float(m.group(2)),
            "claim": "", "source": "", "verdict": "", "command": cmd.group(1) if cmd else ""}


def claims_table(runs_dir: Path = RUNS_DIR) -> str:
    from bench.config import CONF_DIR, load_mapping

    rows = ["| experiment | source | claim | this harness (mean [95% CI], n seeds) | naive | "
            "verdict |", "|---|---|---|---|---|---|"]
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        card = folder / "card.json"
        d = json.loads(card.read_text()) if card.exists() else _legacy_card(folder / "README.md")
        if d is None:
            continue
        if not d.get("claim"):
            ref = load_mapping(CONF_DIR / "experiment" / f"{folder.name}.yaml").get(
                "reference") if (CONF_DIR / "experiment" / f"{folder.name}.yaml").exists() else None
            if ref:
                d = {**d, "claim": ref.get("claim", ""), "source": ref.get("source", ""),
                     "verdict": judge(d["mean"], ref.get("value"), ref.get("tolerance"),
                                      "maximize")}
        ci = "" if not math.isfinite(d["low"]) else f" [{_fmt(d['low'])}, {_fmt(d['high'])}]"
        rows.append(f"| [{folder.name}]({folder.name}/) | {d.get('source', '')} | "
                    f"{d.get('claim', '')} | {d['metric']} {_fmt(d['mean'])}{ci}, n={d['n']} | "
                    f"{_fmt(d['naive'])} | {d.get('verdict', '')} |")
    return "\n".join(rows)


def write_table(runs_dir: Path = RUNS_DIR, readme: Path = README) -> str:
    table = claims_table(runs_dir)
    (runs_dir / "README.md").write_text(
        "# Reference runs: the tutorials' claims at their own budgets\n\n"
        "Generated by `python -m bench.report.run_card --table` from the cards' `card.json` "
        "files; each card is written from its runs by `python -m bench.report.run_card "
        "--experiment <name>`. A claim is met when the mean over seeds lies within the "
        "tolerance its experiment config states (`reference.tolerance`).\n\n" + table + "\n")
    if readme.exists():
        text = readme.read_text()
        if TABLE_START in text and TABLE_END in text:
            head, rest = text.split(TABLE_START, 1)
            _, tail = rest.split(TABLE_END, 1)
            readme.write_text(f"{head}{TABLE_START}\n{table.replace('](', '](reports/runs/')}\n"
                              f"{TABLE_END}{tail}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report.run_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", help="conf/experiment/<name>: its runs become the card")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", type=Path, help="default: reports/runs/<experiment>")
    parser.add_argument("--note", type=Path, help="markdown appended to the card: the measured "
                        "reason a claim is missed (default: <out>/note.md when present)")
    parser.add_argument("--table", action="store_true",
                        help="regenerate the claims table from every card.json")
    args = parser.parse_args(argv)
    if args.experiment:
        out = args.out or RUNS_DIR / args.experiment
        print(write_card(args.tracking_uri, args.experiment, out, args.note or out / "note.md"))
    if args.table or args.experiment:
        print(write_table(RUNS_DIR if args.out is None else args.out.parent))


if __name__ == "__main__":
    main()
