"""The runs-per-hour benchmark runs both contenders for real and writes its section."""

from __future__ import annotations

from bench.perf import RUNS_BEGIN, RUNS_END, bench_runs, merge_section, runs_section


def test_runs_benchmark_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = bench_runs("synthetic", runs=1, epochs=1, hidden=4)
    assert r["harness_s"] > 0 and r["bare_s"] > 0 and r["train"] > 0
    assert 0 < r["harness_util"] <= 2.5 and r["ratio"] == r["harness_s"] / r["bare_s"]
    section = runs_section(["--only", "runs"], r)
    text = merge_section("# Performance\n\nkept\n", section, RUNS_BEGIN, RUNS_END)
    again = merge_section(text, section, RUNS_BEGIN, RUNS_END)
    assert text == again and "kept" in text and "runs per hour" in text


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
