"""A study resumed on a machine without its stores, from the committed tidy record alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from bench.errors import StudyError
from bench.report.build import build, build_from_record
from bench.results import reader, record
from bench.stores import StoreAddress
from bench.study import Runner, load
from bench.study.resume import Committed

SMOKE = Path(__file__).resolve().parent / "study_smoke.yaml"
OVERRIDES = ["seeds=2", "tuning.n_trials=2", "architectures.cells=[gru]",
             "datasets.synthetic_series.enabled=false"]


def _runs(uri: str) -> pd.DataFrame:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "tags.study = 'smoke'", max_results=5000)
    return pd.DataFrame([{"phase": r.data.tags.get("phase", "trial"), "arch": r.data.tags.get("arch"),
                          "seed": r.data.tags.get("seed"), "lr": r.data.params.get("optim.lr")}
                         for r in runs])


def _text(folder: Path) -> pd.DataFrame:
    """A record folder as text, the way a reader with pandas alone sees it."""
    return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                      for f in sorted(folder.glob("*.csv"))], ignore_index=True).fillna("")


@pytest.mark.slow
def test_fresh_clone_resumes_from_the_committed_record(tmp_path, monkeypatch):
    # First sitting, on machine A: the whole tiny study, then its report and record.
    a = tmp_path / "a"
    a.mkdir()
    monkeypatch.chdir(a)
    uri_a = f"sqlite:///{a / 'mlflow.db'}"
    assert Runner(load(SMOKE, [f"tracking_uri={uri_a}", *OVERRIDES]),
                  echo=lambda *_: None).run("first") == 0
    build("smoke", StoreAddress.tracking(uri_a), a / "reports" / "smoke")
    rec = _text(a / "reports" / "smoke" / "record")
    assert set(rec["kind"]) == {"session", "tune", "trial", "final", "baseline"}

    # A cell tuned but not yet retrained (here: its retrains deleted from the store) still
    # has its trials in the record, so a resumed study goes on from them.
    client = MlflowClient(uri_a)
    exps = [e.experiment_id for e in client.search_experiments()]
    for r in client.search_runs(exps, "tags.phase = 'final'"):
        client.delete_run(r.info.run_id)
    tuned_only = reader.from_store(StoreAddress.tracking(uri_a), "smoke")
    assert (tuned_only["kind"] == "final").sum() == 0
    trials = tuned_only[(tuned_only["kind"] == "trial")
                        & (tuned_only["optuna_study"] == "smoke.synthetic.gru-single")]
    assert len(trials) == 2 and trials["trial_params"].notna().all()   # from Optuna
    for r in client.search_runs(exps, "tags.phase = 'final'", run_view_type=ViewType.ALL):
        client.restore_run(r.info.run_id)

    # The sitting was cut off after gru-single's first seed: its second final run is not in
    # what was committed. A fresh clone (machine B) has the record and no stores.
    b = tmp_path / "b"
    (b / "reports" / "smoke").mkdir(parents=True)
    cut = (rec["kind"] == "final") & (rec["arch"] == "gru-single") & (rec["seed"] == "1")
    assert cut.sum() == 1
    record.write(rec[~cut], b / "reports" / "smoke" / "record")
    # A report of the cut record says the study is unfinished and leaves the dataset out.
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copytree(b / "reports" / "smoke" / "record", partial / "record")
    build_from_record(partial / "record", partial)
    text = (partial / "README.md").read_text()
    assert "**The study is not finished**: 5 of 6 planned final runs" in text
    assert "In progress: `synthetic` (5/6)" in text and "No final runs yet." in text

    monkeypatch.chdir(b)
    uri_b = f"sqlite:///{b / 'mlflow.db'}"
    study = load(SMOKE, [f"tracking_uri={uri_b}", *OVERRIDES])
    committed = Committed.load(b / "reports" / "smoke" / "record", "smoke")
    lines: list[str] = []
    assert Runner(study, echo=lines.append, committed=committed).run("second") == 0

    # Only the missing seed ran; tuning was restored, not redone, so it retrained the same
    # best configuration as the recorded seed.
    assert any("gru-single: 2/2 trials done" in x or "gru-single: done (2/2" in x for x in lines)
    runs = _runs(uri_b)
    assert sorted(runs["phase"]) == ["final", "session"]
    assert runs.loc[runs["phase"] == "final", "seed"].tolist() == ["1"]
    recorded_lr = rec.loc[(rec["kind"] == "final") & (rec["arch"] == "gru-single"),
                          "param:optim.lr"].unique().tolist()
    assert runs.loc[runs["phase"] == "final", "lr"].tolist() == recorded_lr
    restored = optuna.load_study(study_name="smoke.synthetic.gru-single", storage=study.storage.connect())
    assert len(restored.trials) == 2 and restored.user_attrs["restored_from"]

    # A third sitting finds everything done.
    lines.clear()
    committed = Committed.load(b / "reports" / "smoke" / "record", "smoke")
    assert Runner(load(SMOKE, [f"tracking_uri={uri_b}", *OVERRIDES]), echo=lines.append,
                  committed=committed).run("third") == 0
    assert sorted(_runs(uri_b)["phase"]) == ["final", "session", "session"]

    # The report keeps the committed runs, adds the new ones, counts every sitting, and
    # regenerates byte for byte from the record alone.
    out = b / "reports" / "smoke"
    build("smoke", StoreAddress.tracking(uri_b), out)
    merged = _text(out / "record")
    assert (merged["kind"] == "session").sum() == 3
    finals = merged[merged["kind"] == "final"]
    assert sorted(finals["seed"]) == ["0", "1"]
    assert len(merged[merged["kind"] == "trial"]) == len(rec[rec["kind"] == "trial"])
    text = (out / "README.md").read_text()
    assert "over 3 session(s)" in text and "not finished" not in text
    again = tmp_path / "again"
    shutil.copytree(out, again)
    build_from_record(again / "record", again)
    assert (again / "README.md").read_bytes() == (out / "README.md").read_bytes()

    # A run found wrong after the fact is withdrawn by deleting it in MLflow: the next report
    # drops it from the record, and the next sitting trains its seed again, although the
    # committed record it resumes from still holds it.
    client_b = MlflowClient(uri_b)
    (wrong,) = [r for r in client_b.search_runs(
        [e.experiment_id for e in client_b.search_experiments()], "tags.phase = 'final'")]
    client_b.delete_run(wrong.info.run_id)
    stale = Committed.load(out / "record", "smoke")   # read before the report below
    assert wrong.info.run_id in set(stale.frame["run_id"])
    build("smoke", StoreAddress.tracking(uri_b), out)
    assert wrong.info.run_id not in set(_text(out / "record")["run_id"])
    assert Runner(load(SMOKE, [f"tracking_uri={uri_b}", *OVERRIDES]), echo=lambda *_: None,
                  committed=stale).run("fourth") == 0
    again = _runs(uri_b)
    assert again.loc[again["phase"] == "final", "seed"].tolist() == ["1"]   # the new one

    # Re-running a sample of the record's final runs at this commit gives the same numbers:
    # trained from the record alone (tuning restored), in scratch stores.
    from bench.study.rerun import rerun, write

    build("smoke", StoreAddress.tracking(uri_b), out)   # with the fourth sitting's run
    table = rerun(out / "record", per_commit=50, echo=lambda *_: None)   # all of them
    assert len(table) >= 2 and set(table["agrees"]) == {"same"}, table.to_string()
    md, _ = write(table, tmp_path / "reruns", "python -m bench.study.rerun --study smoke")
    assert f"**{len(table)} give the same score**, 0 a different one." in md.read_text()
    # a replica is re-run with the rest of its group, as it trained (dropout masks differ
    # between a seed alone and the same seed as one of K replicas)
    grouped = table[table["arch"] == "mlp"]
    assert len(grouped) in (0, 2)
    assert sorted(_runs(uri_b)["phase"]) == sorted(again["phase"])   # its stores untouched


def test_record_of_another_study_is_refused(tmp_path):
    path = tmp_path / "record.csv"
    pd.DataFrame([{"kind": "session", "study": "other", "dataset": "", "arch": "", "seed": "",
                   "score": ""}]).to_csv(path, index=False)
    with pytest.raises(StudyError, match=r"field 'study' is \['other'\], expected \['smoke'\]"):
        Committed.load(path, "smoke")
    assert Committed.load(tmp_path / "missing.csv", "smoke") is None


def test_a_sampled_replica_is_rerun_with_its_whole_group():
    """From the committed protocol record: a final run that trained as one of 5 replicas
    brings the other 4 of its group into the re-run."""
    from bench.study.rerun import with_groups

    rec = record.read(Path(__file__).resolve().parents[2] / "reports" / "protocol" / "record")
    finals = rec[(rec["kind"] == "final") & (rec["tag:replicas"].astype(str) == "5")]
    one = finals.iloc[[0]]
    group = with_groups(rec, one)
    assert len(group) == 5 and set(group["arch"]) == set(one["arch"])
    assert sorted(group["seed"].astype(int)) == [0, 1, 2, 3, 4]


def test_runs_that_trained_apart_are_rerun_in_separate_sittings():
    """A cell whose seed 1 was re-trained alone at a later sitting, beside seed 0 that trained
    in a group of two: the two are re-run apart, each as it trained; a tagged group stays one
    unit however far apart its runs started; untagged groups fall back to start times."""
    from bench.study.rerun import rounds, units, with_groups

    def row(run_id, seed, replicas, group="", start=0, arch="gru-single"):
        return {"run_id": run_id, "kind": "final", "dataset": "d", "arch": arch,
                "tuning_seed": "0", "git_sha": "abc", "seed": seed, "start_ms": start,
                "tag:replicas": str(replicas), "tag:replica_group": group}

    rec = pd.DataFrame([
        row("a0", 0, 2, "g1", 0), row("a1", 1, 2, "g1", 0),       # trained together...
        row("b1", 1, 1, "", 5_000),                               # ...seed 1 again, alone
        row("c0", 0, 2, "g2", 0, "lstm-single"), row("c1", 1, 2, "g2", 3_600_000, "lstm-single"),
        row("o0", 0, 2, "", 0, "mlp"), row("o1", 1, 2, "", 1_000, "mlp"),
        row("o2", 2, 2, "", 200_000, "mlp"), row("o3", 3, 2, "", 201_000, "mlp"),
        row("n0", 0, 1, arch="naive") | {"kind": "baseline", "tuning_seed": float("nan")},
    ])
    u = units(rec)
    assert u["a0"] == u["a1"] != u["b1"] and u["c0"] == u["c1"]
    assert u["o0"] == u["o1"] != u["o2"] == u["o3"]
    # the live record holds seed 0 of group g1 and seed 1's later run alone
    live = rec[rec["run_id"] != "a1"]
    picked = with_groups(live, live[live["run_id"].isin(["a0", "b1", "c1", "o2", "n0"])])
    assert sorted(picked["run_id"]) == ["a0", "b1", "c0", "c1", "n0", "o2", "o3"]
    batches = [sorted(b["run_id"]) for b in rounds(live, picked)]
    assert len(batches) == 2 and sorted(sum(batches, [])) == sorted(picked["run_id"])
    assert not any({"a0", "b1"} <= set(b) for b in batches)
    assert any({"c0", "c1"} <= set(b) for b in batches) and any({"o2", "o3"} <= set(b)
                                                                   for b in batches)


def test_a_rerun_uses_the_thread_count_each_run_trained_with():
    """Runs recorded with different torch thread counts are re-run in separate sittings, each
    under its own count; runs recorded without one keep whatever the process has."""
    import torch

    from bench.study.rerun import by_threads, torch_threads

    batch = pd.DataFrame({"run_id": ["a", "b", "c", "d"],
                          "tag:torch_threads": ["2", "1", float("nan"), "2"]})
    split = [(n, sorted(b["run_id"])) for n, b in by_threads([batch])]
    assert split == [(1, ["b"]), (2, ["a", "d"]), (None, ["c"])]
    before = torch.get_num_threads()
    with torch_threads(3):
        assert torch.get_num_threads() == 3
    with torch_threads(None):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before
