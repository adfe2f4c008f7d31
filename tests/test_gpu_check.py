"""``python -m bench.gpu_check --quick`` as CI runs it: every check reports, none fails, and
on a machine without CUDA each CUDA-only check says that it was skipped and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_quick_gpu_check_passes_and_names_its_skips(tmp_path):
    report = tmp_path / "gpu_check.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--quick", "--report",
                           str(report)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln[:4].strip() in
             ("ok", "FAIL", "note", "skip")]
    by_name = {ln[5:].split(":")[0]: ln[:4].strip() for ln in lines}
    for name in ("environment", "dtypes under 32-true", "fused = cell under 32-true",
                 "runs under 32-true", "host syncs in training + validation batches",
                 "memory after 3 runs", "two-worker sweep"):
        assert name in by_name, (name, proc.stdout)
    assert "FAIL" not in by_name.values()
    assert by_name["host syncs in training + validation batches"] == "ok"
    text = report.read_text()
    assert all(ln in text for ln in lines)
    if not torch.cuda.is_available():
        assert by_name["on-device batches = host batches"] == "skip"
        assert "skip on-device batches = host batches: needs CUDA" in proc.stdout
        assert "No GPU was available" in text
