"""Re-running a sample of a study's final runs at this commit: do older runs still hold?

A study resumed over weeks holds final runs made at many commits; a record that mixes them is
only sound if the code in between did not change the numbers. This draws a few final runs per
commit from the committed record, trains them again here from the record alone (the tuning is
restored from the record's trials, nothing is tuned again), in a scratch MLflow store and
Optuna storage, and writes ``reruns.md`` and ``reruns.csv`` beside the report: each run's
recorded score, the score now, and whether they agree.

    python -m bench.study.rerun --study panel --per-commit 1

The re-runs train through the study runner itself, with the sampled runs withdrawn from the
record (:meth:`bench.study.resume.Committed.without`), so they take the very path a resume
would take. A dataset whose other cells are not complete in the record is refused (a resume
would run them too), as is a cell whose tuning the record does not hold in full.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import EXIT_CODE, StudyError

log = logging.getLogger("bench.study")

KINDS = ("final", "baseline")
KEYS = ["kind", "dataset", "arch", "tuning_seed", "seed"]
# Scores this close (relative) are the same number: seeds trained together as replicas and
# one by one agree to float rounding, far inside any digit a report prints.
SAME_REL = 1e-5


def sample(rec: pd.DataFrame, per_commit: int, seed: int = 0,
           datasets: list[str] | None = None) -> pd.DataFrame:
    """``per_commit`` finished final runs from each commit the record's final runs came from,
    drawn with a seeded generator (the same record gives the same sample)."""
    m = rec["kind"].isin(KINDS) & (rec["status"] == "FINISHED") & ~rec["pruned"].astype(bool)
    m &= rec["score"].notna()
    if datasets:
        m &= rec["dataset"].isin(datasets)
    finals = rec[m].sort_values("run_id")
    rng = np.random.default_rng(seed)
    picked = []
    for _, g in finals.groupby(finals["git_sha"].fillna("unknown"), sort=True):
        idx = rng.choice(len(g), size=min(per_commit, len(g)), replace=False)
        picked.append(g.iloc[sorted(idx)])
    return pd.concat(picked) if picked else finals.iloc[:0]


def with_groups(rec: pd.DataFrame, picked: pd.DataFrame) -> pd.DataFrame:
    """The sampled runs and, for one that trained as one of K replicas, the other K - 1 of its
    group: a replica's dropout masks are not those its seed draws alone, so it is re-run as it
    ran. See :func:`units` for how a group is found."""
    unit = units(rec)
    groups = unit.loc[picked["run_id"]].unique() if len(picked) else []
    members = rec[rec["run_id"].map(unit).isin(groups)]
    return pd.concat([picked, members]).drop_duplicates("run_id")


def units(rec: pd.DataFrame) -> pd.Series:
    """Which runs trained together: a group label per run id (a run alone is its own group).

    Runs that carry the ``replica_group`` tag share its value. Older runs, recorded before
    that tag, are grouped as the cell's runs at one commit with the same ``replicas`` tag
    whose starts follow each other within a minute (they are created together before
    training)."""
    from bench.replica_train import GROUP_TAG

    label = rec["run_id"].astype(str)
    if "tag:replicas" not in rec.columns:
        return pd.Series(label.to_numpy(), index=rec["run_id"])
    size = pd.to_numeric(rec["tag:replicas"], errors="coerce")
    tagged = rec.get(f"tag:{GROUP_TAG}", pd.Series("", index=rec.index)).fillna("").astype(str)
    label = label.where(~((size > 1) & (tagged != "")), "group:" + tagged)
    keys = ["kind", "dataset", "arch", "tuning_seed", "git_sha"]
    old = rec[(size > 1) & (tagged == "")]
    for key, same in old.groupby([*[_text(old[k]) for k in keys], size[old.index]],
                                 sort=False):
        same = same.sort_values("start_ms")
        chunk = (same["start_ms"].astype(float).diff().fillna(0.0) > 60_000).cumsum()
        label[same.index] = [f"near:{'/'.join(map(str, key))}:{c}" for c in chunk]
    return pd.Series(label.to_numpy(), index=rec["run_id"])


def _text(col: pd.Series) -> pd.Series:
    """A column as text with missing values as "" (pandas' str dtype keeps NaN missing, and
    grouping would drop those rows)."""
    return col.astype(str).fillna("")


def rounds(rec: pd.DataFrame, picked: pd.DataFrame) -> list[pd.DataFrame]:
    """The picked runs in sittings that each re-train at most one group per cell: the runner
    trains a cell's missing seeds together, so two runs that trained apart (a seed re-run
    alone at a later sitting, or two groups) must be re-run in different sittings."""
    unit = units(rec).loc[picked["run_id"]].to_numpy()
    cell = picked[["kind", "dataset", "arch", "tuning_seed"]].apply(_text).agg("/".join, axis=1)
    order = pd.Series(unit, index=picked.index).groupby(cell.to_numpy()).transform(
        lambda u: pd.factorize(u)[0])
    return [picked[order == r] for r in sorted(order.unique())]


def _blocked(study, committed, rows: pd.DataFrame) -> dict[str, str]:
    """Datasets a resume would do more on than the sampled runs: the reason for each."""
    sampled = {(r.kind, r.dataset, r.arch, r.seed) for r in rows.itertuples()}
    n_trials = int(study.definition.tuning.n_trials)
    out: dict[str, str] = {}
    drawn = set(rows["dataset"])
    for cell in study.cells():
        if cell.dataset in out or cell.dataset not in drawn:
            continue
        if cell.space is not None and n_trials:
            t = committed.trials(cell.optuna_study)
            done = int(t["status"].isin(["COMPLETE", "PRUNED"]).sum())
            if done < n_trials:
                out[cell.dataset] = (f"{cell.arch}: the record holds {done} of {n_trials} tuning "
                                     "trials")
                continue
        have = committed.finished_seeds(phase=cell.phase, dataset=cell.dataset, arch=cell.arch,
                                        tuning_seed=cell.tuning_seed if cell.space else None)
        missing = [s for s in study.cell_seeds(cell) if s not in have
                   and (cell.phase, cell.dataset, cell.arch, s) not in sampled]
        if missing:
            out[cell.dataset] = f"{cell.arch}: seeds {missing} have no finished run"
    return out


def rerun(record_path: Path, *, per_commit: int = 1, seed: int = 0,
          datasets: list[str] | None = None, echo=print) -> pd.DataFrame:
    """Re-runs the sample; one row per sampled run with the recorded and the new score."""
    from bench.results import reader, record
    from bench.stores import StoreAddress
    from bench.study import Runner, load
    from bench.study.resume import Committed

    rec = record.read(record_path)
    sessions = rec[rec["kind"] == "session"].sort_values("start_ms")
    if sessions.empty or not isinstance(sessions["definition"].iloc[-1], str):
        raise StudyError(f"{record_path}: no session row with the study definition to re-run")
    picked = sample(rec, per_commit, seed, datasets)
    if picked.empty:
        raise StudyError(f"{record_path}: no finished final run to re-run")
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        definition = Path(tmp) / "study.yaml"
        definition.write_text(sessions["definition"].iloc[-1])
        uri = f"sqlite:///{tmp}/mlflow.db"
        study = load(definition, [f"tracking_uri={uri}", f"tuning.storage=sqlite:///{tmp}/o.db"])
        picked = with_groups(rec, picked)
        committed = Committed(record_path, rec).without(set(picked["run_id"]))
        blocked = _blocked(study, committed, picked)
        for ds, why in sorted(blocked.items()):
            echo(f"  {ds}: not re-run ({why})")
        picked = picked[~picked["dataset"].isin(blocked)]
        if picked.empty:
            raise StudyError("no sampled run can be re-run alone: " + "; ".join(
                f"{k}: {v}" for k, v in sorted(blocked.items())))
        for threads, batch in by_threads(rounds(rec, picked)):
            order = list(dict.fromkeys(batch["dataset"]))
            with torch_threads(threads):
                Runner(replace(study, only=tuple(order)), echo=echo,
                       committed=Committed(record_path, rec).without(
                           set(batch["run_id"]))).run("python -m bench.study.rerun")
        fresh = reader.from_store(StoreAddress.tracking(uri), study.name)
    return compare(picked, fresh)


def by_threads(batches: list[pd.DataFrame]) -> list[tuple[int | None, pd.DataFrame]]:
    """Each sitting split by the torch thread count its runs trained with (``torch_threads``
    tag; None where not recorded): on a CPU the count changes float reductions, and a long
    recurrent training can turn that rounding into a different score."""
    out: list[tuple[int | None, pd.DataFrame]] = []
    for batch in batches:
        col = batch.get("tag:torch_threads", pd.Series(index=batch.index, dtype=object))
        n = pd.to_numeric(col, errors="coerce")
        for value in sorted(n.dropna().unique()):
            out.append((int(value), batch[n == value]))
        if n.isna().any():
            out.append((None, batch[n.isna()]))
    return out


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` for the duration (None: left as it is)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compare(picked: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """The sampled runs beside their re-runs, matched on kind, dataset, arch, tuning and seed."""
    new = fresh[fresh["kind"].isin(KINDS)][[*KEYS, "score", "git_sha", "run_id"]]
    old = picked[[*KEYS, "score", "score_units", "git_sha", "run_id", "start_ms"]]
    both = old.merge(new, on=KEYS, how="left", suffixes=("_recorded", "_now"))
    diff = both["score_now"] - both["score_recorded"]
    scale = np.maximum(1.0, both["score_recorded"].abs())
    both["difference"] = diff
    both["agrees"] = np.where(both["score_now"].isna(), "not re-run",
                              np.where(diff.abs() <= SAME_REL * scale, "same", "changed"))
    return both.sort_values(["git_sha_recorded", "dataset", "arch", "seed"]).reset_index(drop=True)


def write(table: pd.DataFrame, out: Path, command: str) -> tuple[Path, Path]:
    """``reruns.csv`` (every column) and ``reruns.md`` (the table a reader checks)."""
    from bench import tracking

    out.mkdir(parents=True, exist_ok=True)
    csv = out / "reruns.csv"
    table.to_csv(csv, index=False)
    same = int((table["agrees"] == "same").sum())
    changed = table[table["agrees"] == "changed"]
    lines = [
        "# Final runs re-run at one commit",
        "",
        f"Command: `{command}`; commit {tracking.git_sha()[:12]}; hardware: {tracking.hardware()}.",
        "",
        f"{len(table)} final runs drawn from the record, from {table['git_sha_recorded'].nunique()} "
        f"commit(s), trained again here from the record alone (tuning restored, not redone): "
        f"**{same} give the same score**, {len(changed)} a different one"
        + (f", {int((table['agrees'] == 'not re-run').sum())} not re-run" if
           (table["agrees"] == "not re-run").any() else "") + ".",
        "",
        "| recorded at | dataset | architecture | seed | recorded | now | difference | |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in table.itertuples():
        now = "" if math.isnan(r.score_now) else f"{r.score_now:.6g}"
        d = "" if math.isnan(r.difference) else f"{r.difference:+.3g}"
        lines.append(f"| {str(r.git_sha_recorded)[:10]} | {r.dataset} | `{r.arch}` | {r.seed:g} "
                     f"| {r.score_recorded:.6g} | {now} | {d} | {r.agrees} |")
    lines += ["", "Scores in each dataset's units (`score_units` in reruns.csv); `same`: equal "
              f"to a relative {SAME_REL:g}."]
    md = out / "reruns.md"
    md.write_text("\n".join(lines) + "\n")
    return md, csv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m bench.study.rerun", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("--study", required=True, help="the study; its record is reports/<study>/record")
    ap.add_argument("--record", type=Path, help="another record folder or CSV")
    ap.add_argument("--per-commit", type=int, default=1, help="runs drawn per commit (1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw (0)")
    ap.add_argument("--datasets", help="comma-separated: draw only from these")
    ap.add_argument("--out", type=Path, help="folder for reruns.md/.csv (reports/<study>)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bench.results import record

    out = args.out or Path("reports") / args.study
    path = args.record or record.locate(Path("reports") / args.study)
    try:
        if path is None:
            raise StudyError(f"reports/{args.study}/record: not found (pass --record PATH)")
        table = rerun(path, per_commit=args.per_commit, seed=args.seed,
                      datasets=args.datasets.split(",") if args.datasets else None)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    md, _ = write(table, out, shlex.join(["python", "-m", "bench.study.rerun", *argv]))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
