"""The committed reports are what their committed records give: a change to the analysis that
would alter a published verdict shows up here, not after the next study."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report.build import build_from_record

REPORTS = Path(__file__).resolve().parents[2] / "reports"


@pytest.mark.slow
@pytest.mark.parametrize("study", ["cpu", "panel", "protocol"])
def test_committed_report_regenerates_from_its_record(study, tmp_path):
    committed = REPORTS / study
    if not (committed / "record").is_dir():
        pytest.skip(f"reports/{study}/record not present")
    # A copy, as a fresh clone has it: the prediction plots fetched from the store when the
    # report was first built are kept; everything else is rebuilt from the record.
    copy = tmp_path / study
    shutil.copytree(committed, copy)
    build_from_record(copy / "record", copy)
    for name in ("README.md", "index.html", "results.csv", "figures/heatmap.png"):
        # a study still running has no figures until a dataset is complete
        assert (copy / name).is_file() == (committed / name).is_file(), name
        if (committed / name).is_file():
            assert (copy / name).read_bytes() == (committed / name).read_bytes(), \
                f"reports/{study}/{name} differs from what reports/{study}/record gives"
    assert _names(copy / "figures") == _names(committed / "figures")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
