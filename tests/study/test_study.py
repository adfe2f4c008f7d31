"""The study runner: plans from definitions, and a tiny real study that resumes without redoing."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.errors import StudyError
from bench.report.build import build
from bench.stores import StoreAddress
from bench.study import Runner, load
from tests.support.replicas import poison_replica

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMOKE = HERE / "study_smoke.yaml"


def test_definition_checks_name_seeds_cells(tmp_path):
    with pytest.raises(StudyError, match="file not found"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(StudyError, match="seeds"):
        load(SMOKE, ["seeds=0"])
    with pytest.raises(StudyError, match="architectures.cells"):
        load(SMOKE, ["architectures.cells=[gru,tcn]"])
    with pytest.raises(StudyError, match="name"):
        load(SMOKE, ["name=a b"])


def test_plan_covers_every_cell_with_equal_budget():
    s = load(SMOKE)
    cells = s.cells()
    assert s.skipped_datasets() == {"jena": "the Jena download: python -m bench.data download jena"}
    assert [(c.dataset, c.arch) for c in cells][:4] == [
        ("synthetic", "gru-single"), ("synthetic", "rnn-single"), ("synthetic", "mlp"),
        ("synthetic", "naive")]
    assert {c.space for c in cells if c.arch != "naive"} == {"recurrent", "mlp"}
    assert next(c for c in cells if c.arch == "naive").space is None
    gru = cells[0]
    assert "trainer=smoke" in gru.overrides and "study=smoke" in gru.overrides
    assert gru.optuna_study == "smoke.synthetic.gru-single"
    # Equal capacity: a tuned budget space, or one pinned budget for every model.
    assert {c.space for c in load(SMOKE, ["match_params=true"]).cells()
            if c.phase == "final"} == {"recurrent_budget"}
    pinned = load(SMOKE, ["match_params=20000"]).cells()
    assert "model.param_budget=choice(20000)" in pinned[0].overrides
    assert "model.param_budget=20000" in next(c for c in pinned if c.arch == "mlp").overrides
    # No tuning at all.
    assert all(c.space is None for c in load(SMOKE, ["tuning.n_trials=0"]).cells())


def test_tuning_repeated_with_several_sampler_seeds():
    s = load(SMOKE, ["datasets.synthetic.tuning_seeds=[0,3]"])
    assert s.tuning_seeds("synthetic") == [0, 3] and s.tuning_seeds("synthetic_series") == [0]
    gru = [c for c in s.cells() if c.dataset == "synthetic" and c.arch == "gru-single"]
    assert [(c.tuning_seed, c.repeat, c.optuna_study) for c in gru] == [
        (0, False, "smoke.synthetic.gru-single"), (3, True, "smoke.synthetic.gru-single.t3")]
    # The untuned naive baseline is not repeated; the tuned MLP is.
    assert len([c for c in s.cells() if c.dataset == "synthetic" and c.arch == "naive"]) == 1
    assert len([c for c in s.cells() if c.dataset == "synthetic" and c.arch == "mlp"]) == 2
    # Without the key nothing changes.
    assert len(load(SMOKE).cells()) == 8
    with pytest.raises(StudyError, match="tuning_seeds"):
        load(SMOKE, ["datasets.synthetic.tuning_seeds=[]"])


def test_more_seeds_on_a_dataset_where_runs_take_seconds(tmp_path):
    s = load(SMOKE, ["seeds=2", "datasets.synthetic.seeds=4"])
    assert s.seeds_of("synthetic") == [0, 1, 2, 3] and s.seeds_of("synthetic_series") == [0, 1]
    assert load(SMOKE, ["datasets.synthetic.seeds=[7,9]"]).seeds_of("synthetic") == [7, 9]
    lines: list[str] = []
    Runner(s, dry_run=True, echo=lines.append).run("dry")
    assert lines[0].startswith("study smoke: 8 cells x 2 seeds, 4 on synthetic;")
    assert "  baseline synthetic/naive: seeds done [], to run [0, 1, 2, 3]" in lines
    assert "  baseline synthetic_series/naive: seeds done [], to run [0, 1]" in lines
    with pytest.raises(StudyError, match="datasets.synthetic.seeds"):
        load(SMOKE, ["datasets.synthetic.seeds=0"])

    # The report plans (and waits for) the dataset's own seeds.
    from omegaconf import OmegaConf

    from bench.report.build import build_from_record
    from bench.results import record

    definition = OmegaConf.to_yaml(load(SMOKE, [
        "seeds=2", "datasets.synthetic.seeds=3", "architectures.cells=[gru]", "baselines={}",
    ]).definition)
    rows = [{"kind": "session", "study": "smoke", "run_id": "s", "definition": definition}]
    for ds, n in (("synthetic", 2), ("synthetic_series", 2)):
        for seed in range(n):
            rows.append({"kind": "final", "study": "smoke", "dataset": ds, "dataset_name": ds,
                         "arch": "gru-single", "seed": seed, "status": "FINISHED",
                         "metric": "accuracy", "direction": "maximize", "rope": 0.01,
                         "rope_source": "config", "score": 0.9 + 0.01 * seed,
                         "run_id": f"{ds}{seed}"})
    build_from_record(record.write(pd.DataFrame(rows), tmp_path / "record"), tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "**The study is not finished**: 4 of 5 planned final runs" in text
    assert "In progress: `synthetic` (2/3)" in text
    from bench.report import content, markdown

    runs = pd.DataFrame([{"dataset": d, "seed": s} for d, n in (("x", 5), ("y", 10), ("z", 5))
                         for s in range(n)])
    assert markdown.seeds(content.seed_sets(runs, ["x", "y", "z"])) == "5 (0-4); 10 (0-9) on `y`"


def test_finished_runs_are_told_apart_by_tuning_seed(tmp_path):
    from bench import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = load(SMOKE, [f"tracking_uri={uri}", "datasets.synthetic.tuning_seeds=[0,1]"])
    client = MlflowClient(uri)
    exp = tracking.ensure_experiment(client, "synthetic", tracking.default_artifact_root(StoreAddress.tracking(uri)))
    base = {"study": "smoke", "phase": "final", "study_dataset": "synthetic", "arch": "gru-single"}
    for seed, extra in ((0, {}), (1, {}), (0, {"tuning_seed": "1"})):  # untagged: tuning seed 0
        rid = tracking.start_run(client, exp, "r", {**base, "seed": seed, **extra})
        client.set_terminated(rid, "FINISHED")
    runner = Runner(s, echo=lambda *_: None)
    first, again = [c for c in s.cells() if c.dataset == "synthetic" and c.arch == "gru-single"]
    assert sorted(runner.finished_runs(first)) == [0, 1]
    assert sorted(runner.finished_runs(again)) == [0]


def test_shipped_definitions_load():
    for name in ("study_cpu.yaml", "study_gpu.yaml"):
        s = load(ROOT / "sweeps" / name)
        archs = {c.arch for c in s.cells()}
        assert {"gru-stacked", "lstm-bidirectional", "rnn-single", "mlp", "naive"} <= archs
    gpu = load(ROOT / "sweeps" / "study_gpu.yaml")
    assert len(gpu.seeds) == 10 and gpu.definition.tuning.n_trials >= 20


def test_panel_definitions_tune_past_the_start_up_phase():
    panel = load(ROOT / "sweeps" / "study_panel.yaml")
    t = panel.definition.tuning
    assert t.n_trials >= 16 and 3 * t.sampler_kwargs.n_startup_trials <= t.n_trials
    assert t.pruner.name in ("successive_halving", "hyperband") and len(panel.seeds) >= 5
    verdict = [d for d in panel.enabled_datasets()
               if panel.definition.datasets[d].get("verdict", True)]
    assert len(verdict) >= 20
    assert {c.arch for c in panel.cells()} >= {"gru-bidirectional", "mlp", "naive"}
    gpu = load(ROOT / "sweeps" / "study_panel_gpu.yaml")
    assert set(gpu.enabled_datasets()) >= set(panel.enabled_datasets()) | {"plaid", "acsf1", "mnist"}
    # full budgets: never fewer epochs than the CPU definition, more where it did not converge
    cpu_epochs, gpu_epochs = _max_epochs(panel), _max_epochs(gpu)
    assert all(gpu_epochs[d] >= n for d, n in cpu_epochs.items())
    assert all(gpu_epochs[d] > cpu_epochs[d] for d in ("co2", "taylor", "tecator", "wineind"))


def _max_epochs(study) -> dict[str, int]:
    out = {}
    for d in study.enabled_datasets():
        for o in study.definition.datasets[d].overrides:
            if o.startswith("trainer.max_epochs="):
                out[d] = int(o.split("=", 1)[1])
    return out


@pytest.mark.slow
def test_study_passes_pruner_options_and_sampler_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load(SMOKE, [
        f"tracking_uri={uri}", "seeds=1", "tuning.n_trials=2", "architectures.cells=[gru]",
        "datasets.synthetic_series.enabled=false", "baselines.mlp=null",
        "tuning.pruner={name: successive_halving, min_resource: 1, reduction_factor: 2}",
        "tuning.sampler_kwargs={n_startup_trials: 1}",
    ])
    assert Runner(study, echo=lambda *_: None).run("test") == 0
    trials = optuna.load_study(study_name="smoke.synthetic.gru-single",
                               storage=study.storage.connect()).trials
    assert len(trials) == 2


def _counts(uri: str, study: str) -> dict[str, int]:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, f"tags.study = '{study}'", max_results=5000)
    out: dict[str, int] = {}
    for r in runs:
        key = r.data.tags.get("phase", "trial")
        out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.slow
def test_tiny_study_runs_resumes_without_redo_and_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"tracking_uri={uri}", "seeds=2", "tuning.n_trials=2",
        "architectures.cells=[gru]", "datasets.synthetic_series.enabled=false",
    ]
    study = load(SMOKE, overrides)
    assert Runner(study, echo=lambda *_: None).run("test") == 0
    first = _counts(uri, "smoke")
    # gru-single and mlp tuned (2 trials each), then 2 seeds x (gru, mlp, naive).
    assert first == {"session": 1, "tune": 2, "trial": 4, "final": 2, "baseline": 4}
    storage = study.storage.connect()
    trials = optuna.load_study(study_name="smoke.synthetic.gru-single", storage=storage).trials
    assert len(trials) == 2

    # Re-running redoes nothing: only a new session record appears.
    assert Runner(load(SMOKE, overrides), echo=lambda *_: None).run("test") == 0
    assert _counts(uri, "smoke") == {**first, "session": 2}

    # A final run lost mid-way (here: marked FAILED) is redone, and only it.
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    victim = client.search_runs(
        exps, "tags.study = 'smoke' and tags.phase = 'final' and tags.seed = '1'")[0]
    client.set_terminated(victim.info.run_id, "FAILED")
    lines: list[str] = []
    assert Runner(load(SMOKE, overrides), echo=lines.append).run("test") == 0
    assert any("gru-single: seeds done [0], to run [1]" in line for line in lines)
    assert _counts(uri, "smoke") == {**first, "session": 3, "final": 3}
    finals = client.search_runs(exps, "tags.study = 'smoke' and tags.phase = 'final'")
    tuned = {r.data.params.get("optim.lr") for r in finals if r.info.status == "FINISHED"}
    best = optuna.load_study(study_name="smoke.synthetic.gru-single", storage=storage).best_params
    assert tuned == {str(best["optim.lr"])}   # the retrains use the best trial's values

    # The report reads it all back, twice, identically.
    store = StoreAddress.tracking(uri)
    a, b = build("smoke", store, tmp_path / "a"), build("smoke", store, tmp_path / "b")
    text = (a / "README.md").read_text()
    assert "## Across datasets" in text and (a / "record" / "synthetic.csv").is_file()
    assert "| `gru-single` | 2 | 2 | 0 | 0 |" in text  # the tuning budget per cell
    for f in ("README.md", "results.csv", *(f"record/{p.name}" for p in (a / "record").iterdir())):
        assert (a / f).read_bytes() == (b / f).read_bytes()


def test_a_share_of_the_datasets_runs_only_those(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from bench.study import main

    monkeypatch.chdir(tmp_path)
    study = load(ROOT / "sweeps" / "study_panel.yaml")
    share = replace(study, only=("nile", "lynx"))
    # in the share's order (quick datasets first), not the definition's
    assert list(dict.fromkeys(c.dataset for c in share.cells())) == ["nile", "lynx"]
    assert len(share.cells()) == 2 * 11
    assert main([str(ROOT / "sweeps" / "study_panel.yaml"), "--datasets", "lynx,nil",
                 "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --datasets: ['nil'] not in") and "usage:" not in err


def _finals(uri: str) -> dict[tuple, dict]:
    """(phase, dataset, arch, seed) -> tags, metric keys and status of the FINISHED final runs."""
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    out = {}
    for r in client.search_runs(exps, "tags.study = 'smoke' and attributes.status = 'FINISHED'",
                                max_results=5000):
        t = r.data.tags
        if t.get("phase") in ("final", "baseline"):
            key = (t["phase"], t["study_dataset"], t["arch"], int(t["seed"]))
            assert key not in out, f"{key} finished twice"
            out[key] = {"tags": t, "metrics": set(r.data.metrics), "params": set(r.data.params)}
    return out


def test_replicas_setting_is_checked():
    assert load(SMOKE).replicas("synthetic")
    assert not load(SMOKE, ["replicas=off"]).replicas("synthetic")
    s = load(SMOKE, ["replicas=off", "datasets.synthetic.replicas=auto"])
    assert s.replicas("synthetic") and not s.replicas("synthetic_series")
    with pytest.raises(StudyError, match="replicas.*expected auto"):
        load(SMOKE, ["replicas=sometimes"])
    with pytest.raises(StudyError, match="datasets.synthetic.replicas"):
        load(SMOKE, ["datasets.synthetic.replicas=3"])


@pytest.mark.slow
def test_replicas_give_the_runs_one_run_per_seed_gives(tmp_path, monkeypatch):
    """``replicas: auto`` and ``off`` leave the same final runs with the same tag, param and
    metric keys; a replica that goes NaN fails its own seed's run only, which the next
    session retries (alone); a third session redoes nothing; the report builds."""
    from bench import replica_train

    monkeypatch.chdir(tmp_path)
    common = ["seeds=2", "tuning.n_trials=1", "architectures.cells=[gru]", "baselines.mlp=null"]
    off_uri = f"sqlite:///{tmp_path / 'off.db'}"
    off = load(SMOKE, [*common, f"tracking_uri={off_uri}", "replicas=off",
                       f"tuning.storage=sqlite:///{tmp_path / 'off-optuna.db'}"])
    assert Runner(off, echo=lambda *_: None).run("test") == 0

    uri = f"sqlite:///{tmp_path / 'auto.db'}"
    overrides = [*common, f"tracking_uri={uri}",
                 f"tuning.storage=sqlite:///{tmp_path / 'auto-optuna.db'}"]
    real = poison_replica(monkeypatch)
    lines: list[str] = []
    # two grouped cells (gru-single on each dataset), seed 1 poisoned in each
    assert Runner(load(SMOKE, overrides), echo=lines.append).run("test") == 2
    assert any("trained together as 2 replicas" in line for line in lines)
    failed = {k: v for k, v in _finals(uri).items() if k[3] == 1 and k[2] == "gru-single"}
    assert not failed  # only seed 0 of the grouped cells finished
    monkeypatch.setattr(replica_train, "ReplicaNet", real)
    lines.clear()
    assert Runner(load(SMOKE, overrides), echo=lines.append).run("test") == 0
    assert any("gru-single: seeds done [0], to run [1]" in line for line in lines)
    got, want = _finals(uri), _finals(off_uri)
    assert set(got) == set(want) and len(got) == 8
    for key, run in got.items():
        grouped = key[2] == "gru-single" and key[3] == 0
        # a run trained in a group names it; one trained alone has no group tag
        assert set(run["tags"]) - {"replica_group"} == set(want[key]["tags"]), key
        assert ("replica_group" in run["tags"]) == grouped, key
        assert run["metrics"] == want[key]["metrics"], key
        assert run["params"] == want[key]["params"], key
        assert want[key]["tags"]["replicas"] == "1"
        assert run["tags"]["replicas"] == ("2" if grouped else "1"), key

    # Nothing is redone.
    before = _counts(uri, "smoke")
    assert Runner(load(SMOKE, overrides), echo=lambda *_: None).run("test") == 0
    assert _counts(uri, "smoke") == {**before, "session": before["session"] + 1}

    out = build("smoke", StoreAddress.tracking(uri), tmp_path / "report")
    assert "## Across datasets" in (out / "README.md").read_text()
    assert "tag:replicas" in pd.read_csv(out / "record" / "synthetic.csv").columns
