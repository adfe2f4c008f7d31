"""``python -m bench.data list | check | fetch <name> | report``.

``list`` answers "is my data where the loader will look, and intact?" without loading
it; ``check`` loads every split exactly as a run would (so a bad file or config fails
here, not an hour into a sweep) and scores the naive baseline; ``fetch`` downloads
what is missing; ``report`` writes ``reports/datasets.md`` from the real files.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.config import CONF_DIR, compose
from bench.data import build, default_data_dir, ucr
from bench.data.base import ConfigError, DataError, Prepared
from bench.data.download import ensure, locate, sources_from_cfg


def dataset_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))


def panel(group: str = "default") -> list[str]:
    """The dataset config names of a panel (``conf/panel/<group>.yaml``), in its order."""
    cfg = OmegaConf.load(CONF_DIR / "panel" / f"{group}.yaml")
    return [str(n) for names in cfg.values() for n in names]


def load_cfg(name: str, overrides: list[str] | None = None) -> DictConfig:
    """The dataset's config as a run composes it (its defaults list merged in)."""
    if name not in dataset_names():
        raise ConfigError(f"dataset {name!r}: no conf/dataset/{name}.yaml; expected one of "
                          f"{dataset_names()}")
    cfg = compose([f"dataset={name}", *(f"dataset.{o}" for o in overrides or [])])
    return cfg.dataset


def file_groups(cfg: DictConfig) -> dict[str, list]:
    """Each file a dataset needs, as its list of accepted sources."""
    if cfg.kind == "mnist":
        return {k: sources_from_cfg(v, f"files.{k}") for k, v in cfg.files.items()}
    if cfg.kind == "imdb" or (cfg.kind == "series" and cfg.get("sources")):
        return {"data": sources_from_cfg(cfg.sources, "sources")}
    if cfg.kind == "ucr":
        return {"data": ucr.sources(cfg)}
    return {}


def _size(path: Path) -> str:
    n: float = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
                else path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def naive_scores(p: Prepared, split: str, batch: int = 8192) -> dict[str, float]:
    """The naive baseline over a whole split, with the metrics a run logs."""
    s = getattr(p, split)
    ys, ns = [], []
    for i in range(0, len(s), batch):
        b = s[torch.arange(i, min(i + batch, len(s)))]
        ys.append(b["y"])
        ns.append(b["naive"])
    y, n = torch.cat(ys), torch.cat(ns)
    if p.info.task == "classification":
        return {"accuracy": float((y == n).float().mean())}
    y, n = y.double(), n.double()
    err = n - y
    mae, rmse = float(err.abs().mean()), float(err.pow(2).mean().sqrt())
    ss_tot = float((y - y.mean()).pow(2).sum())
    r2 = 1 - float(err.pow(2).sum()) / ss_tot if ss_tot > 0 else math.nan
    scale = abs(p.info.target_scale)
    out = {"mae": mae, "rmse": rmse, "r2": r2, "mae_units": mae * scale,
           "rmse_units": rmse * scale}
    if p.info.mase_scale:
        out["mase"] = mae / p.info.mase_scale
    return out


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def cmd_list(names: list[str], data_dir: Path, console: Console, shown: str | None = None) -> int:
    """``shown``: the data folder as the user wrote it (a symlink stays a symlink)."""
    t = Table(title=f"datasets (data_dir: {shown or data_dir})")
    for col in ("dataset", "kind", "file", "location", "size", "checksum"):
        # long paths and URLs fold onto the next line instead of being cut
        t.add_column(col, overflow="fold")
    for name in names:
        cfg = load_cfg(name)
        groups = file_groups(cfg)
        if not groups:
            what = ("generated" if cfg.kind == "synthetic" else
                    f"shipped by statsmodels ({cfg.statsmodels.dataset})" if cfg.get("statsmodels")
                    else "set dataset.path / dataset.url")
            t.add_row(name, cfg.kind, "-", what, "-", "-")
        for key, sources in groups.items():
            found, bad = locate(sources, data_dir, cfg.get("subdir"))
            if found is not None:
                t.add_row(name, cfg.kind, key, str(found.path), _size(found.path),
                          found.status)
            elif bad:
                t.add_row(name, cfg.kind, key, str(bad[0][0]), _size(bad[0][0]),
                          f"[red]{bad[0][2]}[/red]")
            else:
                url = next((u for s in sources for u in s.urls), "no URL")
                t.add_row(name, cfg.kind, key, "[yellow]missing[/yellow]", "-",
                          f"fetch: {url}")
    console.print(t)
    return 0


def check_one(name: str, data_dir: Path, overrides: list[str] | None = None) -> tuple[Prepared, float]:
    cfg = load_cfg(name, overrides)
    t0 = time.perf_counter()
    p = build(cfg, data_dir)
    return p, time.perf_counter() - t0


def cmd_check(names: list[str], data_dir: Path, console: Console) -> int:
    t = Table(title=f"dataset check (data_dir: {data_dir})")
    for col in ("dataset", "status", "task", "train", "val", "test", "steps x feat", "target",
                "naive val", "naive test", "load s"):
        t.add_column(col)
    failed = 0
    for name in names:
        cfg = load_cfg(name)
        if cfg.kind == "series" and not (cfg.get("path") or cfg.get("url") or cfg.get("sources")
                                         or cfg.get("statsmodels")):
            t.add_row(name, "[yellow]skipped[/yellow]: set dataset.path", *[""] * 9)
            continue
        try:
            p, secs = check_one(name, data_dir)
        except (DataError, ConfigError) as e:
            failed += 1
            t.add_row(name, "[red]FAILED[/red]", *[""] * 9)
            console.print(f"[red]{name}:[/red] {escape(str(e))}", soft_wrap=True)
            continue
        t.add_row(name, "[green]OK[/green]", p.info.task, f"{len(p.train):,}", f"{len(p.val):,}",
                  f"{len(p.test):,}", f"{p.info.seq_len} x {p.info.n_features}",
                  p.info.target_name + (f" ({p.info.units})" if p.info.units else ""),
                  _naive_short(p, "val"), _naive_short(p, "test"), f"{secs:.1f}")
    console.print(t)
    console.print(f"{len(names) - failed} of {len(names)} dataset(s) OK")
    return 1 if failed else 0


def _naive_short(p: Prepared, split: str) -> str:
    s, m = naive_scores(p, split), p.info.metric
    out = f"{m} {_fmt(s[m])}"
    if "mase" in s:
        out += f", MASE {_fmt(s['mase'])}"
    return out


def _labelled(label: str, exc: Exception) -> str:
    """The error under its label, once: most messages already open with it."""
    text = str(exc)
    return text if text.startswith(label) else f"{label}: {text}"


def cmd_fetch(names: list[str], data_dir: Path, console: Console) -> int:
    failed = 0
    for name in names:
        cfg = load_cfg(name)
        for key, sources in file_groups(cfg).items():
            try:
                loc = ensure(f"{name} {key}", sources, data_dir, cfg.get("subdir"))
                console.print(f"{name} {key}: {loc.path} ({loc.status})")
            except DataError as e:
                failed += 1
                # soft_wrap: paths and URLs stay whole, for copying
                console.print(_labelled(f"{name} {key}", e), markup=False, highlight=False,
                              soft_wrap=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------- report


def _series_rows(p: Prepared) -> str:
    n = p.info.notes
    parts = [f"{n['rows_in_file']} in file"]
    if n["rows_selected"] != n["rows_in_file"]:
        parts.append(f"{n['rows_selected']} in date range")
    if n["rows_dropped"] != "0":
        parts.append(f"{n['rows_dropped']} dropped")
    if n["rows_leading"] != "0":
        parts.append(f"{n['rows_leading']} leading rows undefined")
    parts.append(f"{n['rows']} used")
    return ", ".join(parts)


def _baseline_cell(p: Prepared, split: str) -> str:
    s = naive_scores(p, split)
    m = p.info.metric
    if p.info.task == "classification":
        return f"accuracy {s['accuracy']:.4f}"
    out = f"{m} {_fmt(s[m])}"
    if m != "mae":
        out += f", MAE {_fmt(s['mae'])}"
    if p.info.units:
        out += f" (MAE {_fmt(s['mae_units'])} {p.info.units}, RMSE {_fmt(s['rmse_units'])} " \
               f"{p.info.units})"
    if "mase" in s:
        out += f", MASE {_fmt(s['mase'])}"
    return out


def _data_dir_label(data_dir: Path) -> str:
    """The data folder as a reader can use it: relative to here, else the variable."""
    try:
        return str(data_dir.relative_to(Path.cwd().resolve()))
    except ValueError:
        try:
            return str(Path("..") / data_dir.relative_to(Path.cwd().resolve().parent))
        except ValueError:
            return "$BENCH_DATA_DIR"


def _rows_cell(cfg: DictConfig, p: Prepared) -> str:
    if cfg.kind == "series":
        return _series_rows(p)
    if cfg.kind == "mnist":
        return f"{len(p.train) + len(p.val):,} train images + {len(p.test):,} test"
    if cfg.kind == "imdb":
        return f"{len(p.train) + len(p.val):,} train reviews + {len(p.test):,} test"
    n = p.info.notes
    return f"{n['cases'].replace(' file', '')} cases, lengths {n['lengths']}"


def _inputs_cell(cfg: DictConfig, p: Prepared) -> str:
    n = p.info
    if cfg.kind == "series":
        return ", ".join(n.feature_names)
    if cfg.kind == "mnist":
        return "28 pixel rows"
    if cfg.kind == "imdb":
        return f"token ids (vocabulary {n.vocab_size:,})"
    return f"{n.n_features} dimension(s), normalize={cfg.normalize}"


def _series_note(cfg: DictConfig, p: Prepared) -> str:
    notes = p.info.notes
    when = (f"rows {notes['first_date'][:10]} .. {notes['last_date'][:10]}; "
            if cfg.get("date_column") else "")
    return (
        f"{when}target rows: train {notes['rows_train']}, val {notes['rows_val']}, test "
        f"{notes['rows_test']}; lookback {cfg.lookback}, step {cfg.step}, delay {cfg.delay}, "
        f"window_context {cfg.window_context}; naive: {notes['naive']}"
        + (f"; {notes['values_interpolated']} missing values interpolated"
           if notes.get("values_interpolated", "0") != "0" else "")
        + f"; scaling features {cfg.scaling.features}, target {cfg.scaling.target} (fitted on "
        f"{cfg.scaling.fit_rows} rows)."
    )


def report(data_dir: Path, out: Path, console: Console) -> str:
    rows, details = _panel_rows(data_dir, console)
    details += _reference_setup_notes(data_dir)
    lines = _datasets_header(data_dir) + rows
    lines += ["", "## Notes", ""]
    for name, text in details:
        lines.append(f"- **{name}**: {text}")
    lines += _loader_notes()
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _datasets_header(data_dir: Path) -> list[str]:
    """How the baselines are scored, stated once above the table that reports them."""
    return [
        "# Datasets",
        "",
        "Generated by `python -m bench.data report` from the files in "
        f"`{_data_dir_label(data_dir)}`: every dataset of the panel (`conf/panel/default.yaml`).",
        "Baselines: majority class of the training labels (classification), the training mean",
        "(extrinsic regression), and for forecasting the seasonal naive forecast (the value one",
        "season before the target) where the series has a season, else persistence (the target's",
        "last value a model could have seen). Scores are computed over the whole split with the",
        "same metrics a run logs; regression scores are on the scaled target, with MAE/RMSE also",
        "in the target's units, and forecasting scores also as MASE (MAE over the in-sample",
        "naive MAE of the training rows; Hyndman & Koehler 2006).",
        "",
        "| dataset | task | rows / cases | train / val / test samples | input (steps x features) "
        "| inputs | target | naive (validation) | naive (test) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]


def _panel_rows(data_dir: Path, console: Console) -> tuple[list[str], list[tuple[str, str]]]:
    """One table row per panel dataset, and the notes on how each was loaded; Jena, whose
    file may be absent, gets a schema check on synthetic data instead."""
    rows: list[str] = []
    details: list[tuple[str, str]] = []
    for name in panel():
        cfg = load_cfg(name)
        try:
            p, secs = check_one(name, data_dir)
        except DataError:
            if name != "jena":
                raise
            rows.append("| jena | regression | needs the download (see below) | | 240 x 14 | "
                        "14 weather columns | T (degC), 24 h ahead | | |")
            details.append(("jena", _jena_note(data_dir, console)))
            continue
        n = p.info
        rows.append(
            f"| {name} | {n.task} | {_rows_cell(cfg, p)} | {len(p.train):,} / {len(p.val):,} / "
            f"{len(p.test):,} | {n.seq_len} x {n.n_features} | {_inputs_cell(cfg, p)} | "
            f"{n.target_name}" + (f" ({n.units})" if n.units else "")
            + f" | {_baseline_cell(p, 'val')} | {_baseline_cell(p, 'test')} |"
        )
        console.print(f"{name}: loaded in {secs:.1f} s")
        if cfg.kind == "series":
            details.append((name, _series_note(cfg, p)))
    return rows, details


def _reference_setup_notes(data_dir: Path) -> list[tuple[str, str]]:
    """The reference setups the defaults depart from, scored so the departure is justified
    by numbers."""
    p_close, _ = check_one("samsung", data_dir, ["target=close"])
    p_same, _ = check_one("sbux", data_dir, ["delay=-1"])
    return [
        ("samsung, target=close (the reference's leaky setup)",
         f"naive validation {_baseline_cell(p_close, 'val')}; test "
         f"{_baseline_cell(p_close, 'test')}. Persistence alone reaches this R^2: "
         "a model's R^2 near 0.92 on price levels says nothing about skill."),
        ("sbux, delay=-1 (the reference's same-day setup)",
         f"{len(p_same.train)} / {len(p_same.val)} / {len(p_same.test)} samples; "
         f"naive (previous day's Volume) validation {_baseline_cell(p_same, 'val')}; "
         f"test {_baseline_cell(p_same, 'test')}."),
    ]


def _loader_notes() -> list[str]:
    """Choices of the loaders that differ from the references, which the table cannot show."""
    return [
        "- **archive datasets** (UCR/UEA, TSER): the archive's train/test split; validation is "
        "a stratified, seeded hold-out of 20% of the training cases (`dataset.val_size`); each "
        "dimension standardised with training statistics (`dataset.normalize=dimension`); "
        "unequal lengths (JapaneseVowels, PLAID) are end-padded and packed, so no model reads "
        "the padding.",
        "- **sbux**: the default forecasts day t's Volume from day t-1's prices; the reference "
        "predicts the same day's Volume from that day's prices (`dataset.delay=-1`), which needs "
        "the day to be over. Scalers are fitted on training rows (the reference fits on all 253).",
        "- **samsung**: the default target is the next-day return (honest; the reference gets "
        "R^2 about 0 for LSTM and GRU). Volume-0 rows (exchange holidays) are dropped before the "
        "moving averages are computed; MA3/MA5 use only closes before the row's day. Scalers are "
        "fitted on training rows only (the reference fits MinMaxScaler on all rows, "
        "`dataset.scaling.fit_rows=all` reproduces that).",
        "",
    ]


def _jena_note(data_dir: Path, console: Console) -> str:
    """Loads a synthetic series of the genuine schema and size through the real Jena config."""
    from bench.data import jena_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        jena_synthetic.write_csv(Path(tmp) / "jena" / "jena_climate_2009_2016.csv")
        t0 = time.perf_counter()
        p, _ = check_one("jena", Path(tmp))
        secs = time.perf_counter() - t0
    n = p.info.notes
    console.print(f"jena: synthetic schema check loaded in {secs:.1f} s")
    return (
        f"the genuine file was not found in `{_data_dir_label(data_dir)}/jena/`; the loader downloads the "
        "canonical zip on first use where the network allows. Schema check instead: a synthetic series with the genuine "
        f"15 columns, timestamp format and {n['rows_in_file']} rows passes the loader's "
        f"validation and yields {len(p.train):,} / {len(p.val):,} / {len(p.test):,} windows "
        f"(target rows train {n['rows_train']}, val {n['rows_val']}, test {n['rows_test']}) of "
        f"{p.info.seq_len} steps x {p.info.n_features} features; the textbook's naive baseline "
        "is MAE about 0.29 (2.57 degC) on validation."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="default: $BENCH_DATA_DIR, else ~/.cache/bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("list", "check", "fetch"):
        sp = sub.add_parser(cmd)
        sp.add_argument("names", nargs="*" if cmd != "fetch" else "+",
                        help="dataset config names (default: the panel, conf/panel/default.yaml)")
    rp = sub.add_parser("report")
    rp.add_argument("--out", type=Path, default=Path("reports/datasets.md"))
    args = ap.parse_args(argv)
    # piped output (logs, CI) gets a wide table instead of one cut to 80 columns
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=200)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    if args.cmd == "report":
        report(data_dir, args.out, console)
        console.print(f"wrote {args.out}")
        return 0
    names = args.names or panel()
    unknown = [n for n in names if n not in dataset_names()]
    if unknown:
        console.print(f"[red]unknown dataset(s) {unknown}; expected some of {dataset_names()}")
        return 2
    if args.cmd == "list":
        return cmd_list(names, _as_set(args.data_dir), console, _data_dir_shown(args.data_dir))
    return {"check": cmd_check, "fetch": cmd_fetch}[args.cmd](names, data_dir, console)


def _as_set(arg: Path | None) -> Path:
    """The data folder as the user set it, symlinks not followed, so paths read as theirs."""
    if arg is not None:
        return arg.expanduser()
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env).expanduser() if env else default_data_dir()


def _data_dir_shown(arg: Path | None) -> str:
    if arg is not None:
        return str(arg)
    env = os.environ.get("BENCH_DATA_DIR")
    return f"{env} (BENCH_DATA_DIR)" if env else f"{default_data_dir()} (default)"


if __name__ == "__main__":
    sys.exit(main())
