"""``python -m bench.report.legacy``: a tidy record rebuilt from an earlier report's files.

Reports written before the tidy record existed kept ``results.csv`` (one row per final run: the
score, every last-logged metric, the tuned parameters, the MLflow run id) and a README that
quotes the study definition, the hardware and the command. When the MLflow store that produced
them is gone, this turns those two files into a record the report builds from. What the files
never held cannot come back and is listed in the record's ``source`` column of the session row:
per-epoch curves, the tuning trials (Optuna storage), session times and the runs' start times;
the dataset config keys are taken from ``conf/dataset/`` with the definition's overrides.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.results import record
from bench.results.rope import dataset_rope

# results.csv columns that are not metrics or parameters
BASE = ("dataset", "dataset_name", "arch", "phase", "seed", "metric", "direction", "score_units",
        "score", "run_id")
PARAM_NAMES = ("batch_size", "layer_sizes", "n_params")
INFERRED = ("dataset config keys (param:dataset.*) are taken from conf/dataset/ with the "
            "definition's overrides")
NOT_REBUILT = ("per-epoch curves (learning-curve figures are kept from the report that the store "
               "produced)", "tuning trials and hyperparameter importances (the Optuna storage)",
               "session wall times and run start times")


def _readme_facts(text: str) -> dict[str, str]:
    """The study definition, hardware and command quoted by an earlier README."""
    out = {}
    m = re.search(r"```yaml\n(.*?)```", text, re.S)
    if m:
        out["definition"] = m.group(1)
    for key, pattern in (("hardware", r"^- \*\*Hardware\*\*: (.+)$"),
                         ("command", r"^- \*\*Command\*\*: `(.+?)`"),
                         ("tracking_uri", r"^- \*\*MLflow store\*\*: `(.+?)`"),
                         ("optuna_storage", r"Optuna storage: `(.+?)`")):
        m = re.search(pattern, text, re.M)
        if m:
            out[key] = m.group(1)
    return out


def rebuild(results: Path, readme_text: str = "", study: str | None = None) -> pd.DataFrame:
    res = pd.read_csv(results, dtype=str, keep_default_na=False)
    missing = [c for c in BASE if c not in res.columns]
    if missing:
        raise ValueError(f"{results}: columns {missing} missing; not a bench results.csv")
    facts = _readme_facts(readme_text)
    name = study or results.parent.name
    rows: list[dict[str, Any]] = []
    dataset_params: dict[str, dict[str, str]] = {}
    for _, r in res.iterrows():
        row = {
            "kind": r["phase"], "study": name, "dataset": r["dataset"],
            "dataset_name": r["dataset_name"], "arch": r["arch"], "seed": r["seed"],
            "status": "FINISHED", "pruned": False, "metric": r["metric"],
            "direction": r["direction"], "units": r["score_units"],
            "task": "classification" if r["metric"] == "accuracy" else "regression",
            "score": r["score"], "score_units": r["score_units"], "run_id": r["run_id"],
            "source": "results.csv", "hardware": facts.get("hardware"),
        }
        for c in res.columns:
            if c in BASE or r[c] == "":
                continue
            is_param = c.startswith(("model.", "optim.", "trainer.")) or c in PARAM_NAMES
            row[("param:" if is_param else "metric:") + c] = r[c]
        if row["kind"] == "final" and facts.get("definition"):
            row["tuning_seed"] = _primary_seed(facts["definition"])
        row.update(dataset_params.setdefault(
            r["dataset"], _dataset_params(r["dataset_name"], r["dataset"], facts.get("definition"))))
        rows.append(row)
    df = pd.DataFrame(rows)
    ropes = {ds: dataset_rope(g.iloc[0]["dataset_name"], g.iloc[0]["direction"])
             for ds, g in df.groupby("dataset", sort=True)}
    df["rope"] = df["dataset"].map(lambda d: ropes[d][0])
    df["rope_source"] = df["dataset"].map(lambda d: ropes[d][1])
    if facts:
        session = {
            "kind": "session", "study": name, "run_id": "session-from-readme",
            "status": "FINISHED", "pruned": False, "definition": facts.get("definition"),
            "hardware": facts.get("hardware"), "command": facts.get("command"),
            "tag:hardware": facts.get("hardware"), "tag:command": facts.get("command"),
            "tag:tracking_uri": facts.get("tracking_uri"),
            "tag:optuna_storage": facts.get("optuna_storage"),
            "source": "rebuilt from results.csv and the report's README; not rebuilt: "
                      + "; ".join(NOT_REBUILT) + "; " + INFERRED,
        }
        df = pd.concat([pd.DataFrame([session]), df], ignore_index=True)
    df = df.replace({"": np.nan})
    return record.tidy(df)


def _dataset_params(dataset_name: str, key: str, definition: str | None) -> dict[str, str]:
    """``param:dataset.*`` as the runs had them: the dataset's config in this checkout with the
    study definition's overrides for that entry applied (results.csv kept no dataset keys)."""
    from omegaconf import DictConfig, OmegaConf

    from bench import tracking
    from bench.config import load_mapping

    path = record.CONF_DATASETS / f"{dataset_name}.yaml"
    if not path.is_file():
        return {}
    cfg = load_mapping(path)
    if definition:
        try:
            spec = OmegaConf.create(definition).datasets.get(key) or {}
        except Exception:
            spec = {}
        dots = [str(o)[len("dataset."):] for o in spec.get("overrides", [])
                if str(o).startswith("dataset.")]
        cfg = cast(DictConfig, OmegaConf.merge(cfg, OmegaConf.from_dotlist(dots)))
    flat = tracking.flatten(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
    return {f"param:dataset.{k}": str(v) for k, v in sorted(flat.items())
            if not isinstance(v, list | dict)}


def _primary_seed(definition: str) -> int:
    from omegaconf import OmegaConf

    try:
        return int(OmegaConf.create(definition).tuning.seed)
    except Exception:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report.legacy", description=__doc__)
    ap.add_argument("results", type=Path, help="an earlier report's results.csv")
    ap.add_argument("--readme", type=Path, default=None,
                    help="that report's README (for the definition, hardware and command)")
    ap.add_argument("--study", default=None, help="study name (default: the results' folder)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"record folder to write (default: {record.RECORD_NAME}/ beside results.csv)")
    args = ap.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8") if args.readme else ""
    df = rebuild(args.results, text, args.study)
    out = args.out or args.results.parent / record.RECORD_NAME
    record.write(df, out)
    print(f"wrote {out}: {int((df['kind'] != 'session').sum())} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
