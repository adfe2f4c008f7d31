"""Study records built by hand, for report tests that need no store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import record


def hand_record(tmp_path: Path) -> Path:
    """A study record written by hand (no store): two datasets, two architectures and the naive
    baseline, four seeds, and dataset ``d`` tuned under two sampler seeds."""
    rng = np.random.default_rng(0)
    rows = [{"kind": "session", "study": "hand", "run_id": "s",
             "definition": "name: hand\ntuning: {seed: 0, n_trials: 4}\n"
                           "datasets:\n  d: {tuning_seeds: [0, 1]}\n  e: {}\n"}]
    for ds, shift in (("d", 0.0), ("e", 0.02)):
        for arch, mean in (("gru-single", 0.90), ("lstm-single", 0.85), ("naive", 0.5)):
            for tseed in ((0, 1) if ds == "d" and arch != "naive" else (0,)):
                for seed in range(4):
                    v = mean + shift + (0.0 if arch == "naive" else
                                        0.01 * tseed + rng.normal(0, 0.003))
                    rows.append({
                        "kind": "baseline" if arch == "naive" else "final", "study": "hand",
                        "dataset": ds, "dataset_name": ds, "arch": arch, "seed": seed,
                        "tuning_seed": None if arch == "naive" else tseed, "status": "FINISHED",
                        "metric": "accuracy", "direction": "maximize", "rope": 0.005,
                        "rope_source": "config", "score": v, "run_id": f"{ds}-{arch}-{tseed}-{seed}",
                        "optuna_study": None if arch == "naive" else f"hand.{ds}.{arch}"})
    return record.write(pd.DataFrame(rows), tmp_path / "record")
