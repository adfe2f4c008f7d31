"""The runs-per-hour benchmark runs both contenders for real and writes its section."""

from __future__ import annotations

import pytest

from bench.perf import RUNS_BEGIN, RUNS_END, bench_runs, merge_section, runs_section


def test_runs_benchmark_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = bench_runs("synthetic", runs=1, epochs=1, hidden=4)
    assert r["harness_s"] > 0 and r["bare_s"] > 0 and r["train"] > 0
    assert 0 < r["harness_util"] <= 2.5 and r["ratio"] == r["harness_s"] / r["bare_s"]
    assert r["trial_s"] > 0 and r["trial_ratio"] == r["trial_s"] / r["bare_s"]
    # the timed run went through every step of a run outside a Hydra job
    profile = r["profile"]
    for label, sec in profile.items():
        assert sec > 0 or label == "best weights saved (Hydra jobs only)", (label, sec)
    assert sum(profile.values()) == pytest.approx(r["profiled_s"], rel=1e-6)
    section = runs_section(["--only", "runs"], r)
    text = merge_section("# Performance\n\nkept\n", section, RUNS_BEGIN, RUNS_END)
    again = merge_section(text, section, RUNS_BEGIN, RUNS_END)
    assert text == again and "kept" in text and "runs per hour" in text
    assert "| MLflow metric writes |" in text and "| whole run |" in text
    assert "| harness as a tuning trial (no test split, no figures) |" in text


def test_replicas_benchmark_section(tmp_path, monkeypatch):
    from bench.perf import REPLICAS_BEGIN, REPLICAS_END, bench_replicas, replicas_section

    monkeypatch.chdir(tmp_path)
    r = bench_replicas("synthetic", ks=(1, 2), repeats=1, epochs=1, hidden=4)
    assert set(r["median"]) == {"harness", "bare", "K=1", "K=2"}
    assert all(wall > 0 and cpu > 0 for wall, cpu in r["median"].values())
    # a grouped model holds per replica what one single model holds, give or take
    assert 0 < r["memory"]["K=2"] <= 2 * r["memory"]["K=1"]
    section = replicas_section(["--only", "replicas"], [r])
    text = merge_section("# Performance\n\nkept\n", section, REPLICAS_BEGIN, REPLICAS_END)
    again = merge_section(text, section, REPLICAS_BEGIN, REPLICAS_END)
    assert text == again and "kept" in text and "grouped, K=2" in text


def test_timers_exclude_nested_components_and_unwrap(monkeypatch):
    import types

    from bench import perf

    clock = [0.0]  # a clock the functions advance, so the sums are exact
    monkeypatch.setattr(perf.time, "perf_counter", lambda: clock[0])
    box = types.SimpleNamespace()

    def inner():
        clock[0] += 5.0

    def outer():
        clock[0] += 2.0
        box.inner()
        return "done"

    box.inner, box.outer = inner, outer
    with perf.Timers() as timers:
        timers.wrap(box, "inner", "inner")
        timers.wrap(box, "outer", "outer")
        assert box.outer() == "done"
        box.inner()
    assert box.inner is inner and box.outer is outer
    assert timers.seconds == {"inner": 10.0, "outer": 2.0}
