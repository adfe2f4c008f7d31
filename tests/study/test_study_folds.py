"""A study on a small training set tunes on folds and trains its final models on all cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from bench.errors import StudyError
from bench.study import Runner, load

SMOKE = Path(__file__).resolve().parent / "study_smoke.yaml"


def test_folds_setting_is_checked():
    assert load(SMOKE, ["tuning.folds=auto"]).folds == "auto"
    assert load(SMOKE, ["tuning.folds=3"]).folds == "3"
    assert load(SMOKE).folds == "off"
    for bad in ("1", "sometimes"):
        with pytest.raises(StudyError, match="tuning.folds.*expected auto"):
            load(SMOKE, [f"tuning.folds={bad}"])


@pytest.mark.parametrize("replicas", ["auto", "off"])
def test_fold_tuned_study_trains_finals_on_all_cases(tmp_path, monkeypatch, replicas):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load(SMOKE, [
        f"tracking_uri={uri}", "seeds=2", "tuning.n_trials=2", "tuning.folds=auto",
        "architectures.cells=[gru]", "baselines.mlp=null", "datasets.synthetic_series.enabled=false",
        f"replicas={replicas}",
        "overrides=[trainer=smoke,dataset.n_samples=100,trainer.limit_train_batches=null,"
        "trainer.limit_val_batches=null,trainer.limit_test_batches=null,trainer.max_epochs=4]",
    ])
    lines: list[str] = []
    assert Runner(study, echo=lines.append).run("test") == 0
    assert any("trained on all training cases for" in line for line in lines)
    st = optuna.load_study(study_name="smoke.synthetic.gru-single",
                           storage=study.storage.connect())
    best = st.best_trial
    assert best.user_attrs["folds"] == 5   # auto: 80 training cases < 500
    assert best.value == pytest.approx(float(np.mean(best.user_attrs["fold_values"])))
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "tags.study = 'smoke'", max_results=1000)
    trials = [r for r in runs if r.data.tags.get("sweep_role") == "trial"]
    assert len(trials) == 2
    for r in trials:   # no tuning trial looks at the test split
        assert not [k for k in r.data.metrics if k.startswith("test/")]
    finals = [r for r in runs if r.data.tags.get("phase") == "final"]
    assert sorted(int(r.data.tags["seed"]) for r in finals) == [0, 1]
    for r in finals:
        assert r.info.status == "FINISHED"
        assert r.data.tags["tuned_epochs"] == str(best.user_attrs["tuned_epochs"])
        assert r.data.tags["train_cases"] == "80"
        assert r.data.tags["replicas"] == ("2" if replicas == "auto" else "1")
        assert r.data.metrics["epochs_trained"] == best.user_attrs["tuned_epochs"]
        assert "test/accuracy" in r.data.metrics
    # the naive baseline is not tuned: its runs keep the hold-out
    naive = [r for r in runs if r.data.tags.get("arch") == "naive"]
    assert naive and all("tuned_epochs" not in r.data.tags for r in naive)
