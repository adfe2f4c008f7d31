"""Study definitions are held to their schema at load: a misspelled key or a bad value in the
file or in a command-line override stops the study before any work, naming the key, where it
was written and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import StudyError
from bench.study import load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMOKE = HERE / "study_smoke.yaml"

TINY = """\
name: tiny
seeds: 2
overrides: [trainer=smoke]
tuning: {n_trials: 2, pruner: none}
architectures: {cells: [gru], topologies: [single], space: recurrent}
datasets:
  synthetic: {overrides: [dataset=synthetic]}
"""


def definition(tmp_path: Path, extra: str = "", name: str = "study_tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(TINY + extra)
    return path


@pytest.mark.parametrize("extra,message", [
    ("tunning: {n_trials: 3}\n", r"^tunning: unknown key in .*study_tiny\.yaml; did you mean 'tuning'\?$"),
    ("seed: 3\n", r"^seed: unknown key in .*; did you mean 'seeds'\?$"),
    ("baseline: {}\n", r"^baseline: unknown key in .*; did you mean 'baselines'\?$"),
])
def test_misspelled_top_level_keys_are_refused_with_the_closest_key(tmp_path, extra, message):
    with pytest.raises(StudyError, match=message):
        load(definition(tmp_path, extra))


def test_misspelled_nested_keys_name_their_path(tmp_path):
    path = tmp_path / "study_nested.yaml"
    path.write_text(TINY.replace("n_trials: 2", "n_trails: 2"))
    with pytest.raises(StudyError, match=r"tuning\.n_trails: unknown key .*'tuning\.n_trials'"):
        load(path)
    path.write_text(TINY.replace("{overrides: [dataset=synthetic]}",
                                 "{overides: [dataset=synthetic]}"))
    with pytest.raises(StudyError, match=r"datasets\.synthetic\.overides: .*"
                                         r"'datasets\.synthetic\.overrides'"):
        load(path)
    with pytest.raises(StudyError, match=r"baselines\.mpl: unknown key .*'baselines\.mlp'"):
        load(definition(tmp_path, "baselines: {mpl: {tune: false}}\n"))


def test_override_errors_name_the_override():
    with pytest.raises(StudyError) as err:
        load(SMOKE, ["tuning.n_trails=2"])
    assert str(err.value) == ("tuning.n_trails: unknown key in the override 'tuning.n_trails=2'; "
                              "did you mean 'tuning.n_trials'?")
    with pytest.raises(StudyError, match="the override 'seeds': expected key=value"):
        load(SMOKE, ["seeds"])


@pytest.mark.parametrize("override,message", [
    ("tuning.n_trials=-1", r"tuning\.n_trials: -1 .*expected an integer >= 0"),
    ("tuning.n_trials=2.5", r"tuning\.n_trials: 2\.5 .*expected an integer >= 0"),
    ("tuning.n_jobs=0", r"tuning\.n_jobs: 0 .*expected an integer >= 1"),
    ("seeds=0", r"seeds: 0 .*expected a positive count or a non-empty list"),
    ("seeds=[]", r"seeds: \[\] .*expected a positive count"),
    ("seeds=[1,1]", r"seeds: \[1, 1\] .*distinct"),
    ("seeds=[1,x]", r"seeds: \[1, 'x'\] is not allowed"),
    ("overrides=trainer=smoke", r"overrides: 'trainer=smoke' .*expected a list of key=value"),
    ("datasets.synthetic.overrides=[1]", r"datasets\.synthetic\.overrides: 1 in \[1\] .*a string"),
    ("datasets.synthetic.enabled=maybe", r"datasets\.synthetic\.enabled: 'maybe' .*true or false"),
    ("architectures.topologies=[single,stacke]", r"'stacke' in .*expected one of \['single'"),
    ("match_params=big", r"match_params: 'big' .*null, true"),
    ("baselines.mlp.tune=1", r"baselines\.mlp\.tune: 1 is .*true or false"),
])
def test_bad_values_are_refused_before_any_work(override, message):
    with pytest.raises(StudyError, match=message) as err:
        load(SMOKE, [override])
    assert f"in the override '{override}'" in str(err.value)


def test_tuning_sampler_and_pruner_are_checked_as_a_sweep_checks_them(tmp_path):
    with pytest.raises(StudyError, match=r"tuning\.pruner: unknown option 'min_resourse' for "
                                         r"successive_halving .*expected one of \["):
        load(SMOKE, ["tuning.pruner={name: successive_halving, min_resourse: 1}"])
    with pytest.raises(StudyError, match=r"tuning\.pruner: 'medain' is not allowed"):
        load(SMOKE, ["tuning.pruner=medain"])
    with pytest.raises(StudyError, match=r"tuning\.pruner: successive_halving refuses .*"
                                         "reduction_factor"):
        load(SMOKE, ["tuning.pruner={name: successive_halving, reduction_factor: 1}"])
    with pytest.raises(StudyError, match=r"tuning\.sampler: 'tpee' .*one of \['tpe'"):
        load(SMOKE, ["tuning.sampler=tpee"])
    # The fault of a merged value is charged to the override that wrote the key.
    path = definition(tmp_path, "").with_name("study_random.yaml")
    path.write_text(TINY.replace("pruner: none", "pruner: none, sampler: random"))
    with pytest.raises(StudyError) as err:
        load(path, ["tuning.sampler_kwargs={n_startup_trials: 3}"])
    assert str(err.value).startswith(
        "tuning.sampler_kwargs: unknown option 'n_startup_trials' for random in the override "
        "'tuning.sampler_kwargs={n_startup_trials: 3}'")
    study = load(SMOKE, ["tuning.pruner={name: hyperband, reduction_factor: 2}",
                         "tuning.sampler_kwargs={n_startup_trials: 1}"])
    assert study.definition.tuning.pruner.reduction_factor == 2


def test_names_and_spaces_a_study_uses_are_checked():
    with pytest.raises(StudyError, match=r"datasets\.synthetic\.baselines: unknown baseline "
                                         r"'naiv' .*did you mean 'naive'\?"):
        load(SMOKE, ["datasets.synthetic.baselines=[naiv]"])
    with pytest.raises(StudyError, match=r"architectures\.space: 'recurent' cannot be used in "
                                         r"the override .*not found"):
        load(SMOKE, ["architectures.space=recurent"])
    with pytest.raises(StudyError, match=r"baselines\.mlp\.space: tune: true needs a search"):
        load(SMOKE, ["baselines.mlp.space=null"])
    # Untuned, the spaces are never read, so a missing one does not matter.
    assert load(SMOKE, ["tuning.n_trials=0", "architectures.space=recurent"]).cells()


@pytest.mark.parametrize("how", ["baselines: {}\n", "baselines: null\n"])
def test_an_empty_or_null_baselines_mapping_means_no_baselines(tmp_path, how):
    cells = load(definition(tmp_path, how)).cells()
    assert [c.arch for c in cells] == ["gru-single"]
    assert {c.phase for c in cells} == {"final"}


def test_baselines_switched_off_from_the_command_line_and_back_on():
    def baselines(*overrides: str) -> list[str]:
        return [c.arch for c in load(SMOKE, list(overrides)).cells()
                if c.phase == "baseline" and c.dataset == "synthetic"]

    assert baselines() == ["mlp", "naive"]
    assert baselines("baselines={}") == []
    assert baselines("baselines=null") == []
    assert baselines("baselines.mlp=null") == ["naive"]
    assert baselines("baselines={}", "baselines.naive={tune: false}") == ["naive"]


def test_every_shipped_definition_passes_its_schema():
    shipped = sorted((ROOT / "sweeps").glob("study_*.yaml"))
    assert len(shipped) >= 4
    for path in shipped:
        assert load(path).cells(), path


def test_cli_refuses_a_misspelled_override_in_one_line_before_heavy_imports():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bench.study", str(SMOKE),
         "tuning.n_trails=2", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    # the documented status of a mistake the user can fix, one line, no usage block
    assert proc.returncode == 1 and len(said) == 1, proc.stderr
    assert said[0].startswith("error: tuning.n_trails")
    assert "n_trials" in said[0].split("did you mean")[1]
    assert proc.stdout == ""
    assert {"torch", "lightning", "mlflow"}.isdisjoint(imported)
