"""Where sweep workers train: placements on fake GPU lists, and a real sweep's trials on the
CPU; a worker frees each finished trial's objects before the next one."""

from __future__ import annotations

import gc

import pytest
from optuna.trial import TrialState

import bench.sweep
from bench.data.base import ConfigError
from bench.data.module import BenchDataModule
from bench.sweep.devices import in_process_devices, plan, visible_gpus
from bench.task import BenchTask
from tests.support.sweep import BASE, enter_workdir, sqlite

FOUR = ["0", "1", "2", "3"]


def _gpus(placements):
    return [p.env.get("CUDA_VISIBLE_DEVICES") for p in placements]


def test_auto_gives_each_worker_its_own_gpu_round_robin():
    assert _gpus(plan(4, None, "auto", visible=FOUR, cpu_count=8, environ={})) == FOUR
    assert _gpus(plan(3, "auto", "gpu", visible=["0", "1"], cpu_count=8, environ={})) == \
        ["0", "1", "0"]


def test_a_list_with_repeats_puts_several_workers_on_one_gpu():
    placements = plan(4, [0, 0, 1, 1], "gpu", visible=FOUR, cpu_count=8, environ={})
    assert _gpus(placements) == ["0", "0", "1", "1"]
    assert [p.device for p in placements] == ["gpu 0", "gpu 0", "gpu 1", "gpu 1"]
    assert _gpus(plan(2, "2,3", "gpu", visible=FOUR, cpu_count=8, environ={})) == ["2", "3"]


def test_shared_spreads_workers_while_every_worker_sees_every_gpu():
    placements = plan(3, "shared", "gpu", visible=["0", "1"], cpu_count=8, environ={})
    # the first visible device is the one `trainer.devices: 1` picks
    assert _gpus(placements) == ["0,1", "1,0", "0,1"]
    assert [p.device for p in placements] == ["gpu 0", "gpu 1", "gpu 0"]


def test_ids_follow_an_outer_cuda_visible_devices():
    environ = {"CUDA_VISIBLE_DEVICES": "5,7"}
    assert visible_gpus(environ) == ["5", "7"]
    assert _gpus(plan(2, None, "gpu", cpu_count=4, environ=environ)) == ["5", "7"]


def test_cpu_workers_on_a_gpu_host_stay_off_the_gpus_and_split_the_cores():
    placements = plan(4, None, "cpu", visible=FOUR, cpu_count=16, environ={})
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in placements)
    assert [p.env["OMP_NUM_THREADS"] for p in placements] == ["4"] * 4
    assert {p.device for p in placements} == {"cpu"}
    # no GPU at all: the same
    assert _gpus(plan(2, None, "auto", visible=[], cpu_count=2, environ={})) == [None, None]


def test_gpu_workers_split_the_cores_too_and_an_explicit_thread_count_wins():
    placements = plan(2, None, "gpu", visible=["0"], cpu_count=16, environ={})
    assert [p.env["OMP_NUM_THREADS"] for p in placements] == ["8", "8"]
    placements = plan(2, None, "cpu", visible=[], cpu_count=16,
                      environ={"OMP_NUM_THREADS": "3"})
    assert all("OMP_NUM_THREADS" not in p.env for p in placements)


def test_one_worker_in_process_gets_the_chosen_gpu_through_trainer_devices():
    assert in_process_devices([2], "gpu", visible=FOUR) == [2]
    assert in_process_devices("7", "auto", visible=["5", "7"]) == [1]
    for devices in (None, "auto", "shared"):
        assert in_process_devices(devices, "gpu", visible=FOUR) is None
    assert in_process_devices([2], "cpu", visible=FOUR) is None
    with pytest.raises(ConfigError, match="GPU 9 is not visible"):
        in_process_devices([9], "gpu", visible=FOUR)


def test_a_device_list_must_name_a_gpu():
    with pytest.raises(ConfigError, match="names no GPU"):
        plan(2, [], "gpu", visible=FOUR, cpu_count=2, environ={})


def _live(cls) -> int:
    return sum(type(o) is cls for o in gc.get_objects())


@pytest.mark.slow
def test_a_worker_frees_each_finished_trial(tmp_path, monkeypatch):
    """With automatic collection off, only the worker's own release can free the cycles
    between the trainer, the module and the data module."""
    workdir = enter_workdir(tmp_path, monkeypatch)
    storage, mlflow_uri = sqlite(workdir, "optuna.db"), sqlite(workdir, "mlflow.db")
    gc.collect()
    before = (_live(BenchTask), _live(BenchDataModule))
    gc.disable()
    try:
        study = bench.sweep.tune([*BASE, f"tracking.uri={mlflow_uri}"], "recurrent",
                                 study_name="mem", storage=storage, n_trials=2,
                                 pruner="none", seed=0)
        after = (_live(BenchTask), _live(BenchDataModule))
    finally:
        gc.enable()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["device"] for t in trials] == ["cpu", "cpu"]
    assert after == before
