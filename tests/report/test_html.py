"""The static page renders the README's structure: the verdict on top, the heat map with a row
per dataset, a section per dataset, nothing loaded from a network, the same bytes every build;
and a real browser finds it working."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import content, html, markdown
from bench.report.__main__ import main as report_main
from bench.report.build import build_from_record
from bench.report.collect import study_data
from bench.report.model import FinalRun
from bench.results import record
from bench.stores import mask
from tests.support.records import hand_record as _record

ROOT = Path(__file__).resolve().parents[2]


def _heat_rows(page: str) -> list[str]:
    table = re.search(r'<table class="heat sortable" id="heatmap-table">(.*?)</table>', page, re.S)
    assert table, "no heat map table"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(1), re.S).group(1)
    return re.findall(r'<tr[^>]*><th scope="row" data-v="([^"]+)"', body)


@pytest.mark.slow
def test_page_has_the_verdict_heat_map_and_a_section_per_dataset(tmp_path):
    path = _record(tmp_path)
    build_from_record(path, tmp_path)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    report = content.compute(study_data(record.read(path)), content.Figures(tmp_path / "figures"))

    # The verdict first: before the heat map and before any dataset.
    verdict = "<strong>Single best: <code>gru-single</code>.</strong>"
    assert verdict in page
    assert page.index(verdict) < page.index('id="heatmap-table"') < page.index('id="across"') \
        < page.index('<details class="dataset"')
    # One heat-map row and one collapsible section per dataset, in the report's order.
    datasets = [s.dataset for s in report.datasets]
    assert _heat_rows(page) == datasets == ["d", "e"]
    assert re.findall(r'<details class="dataset" id="ds-([^"]+)">', page) == datasets
    # Cells carry the structure's numbers: the anchor is ranked 1, in the top group.
    cell = report.heatmap.rows[0].cells["gru-single"]
    assert cell.rank == 1 and cell.top and report.heatmap.archs[0] == "gru-single"
    assert '<td class="top" style="background:' in page
    # The README's wording of the same structure, and its figures by relative path.
    assert "Tests that ran: Welch t." in page
    assert 'src="figures/cd_diagram.png"' in page
    for src in re.findall(r'src="([^"]+)"', page):
        assert (tmp_path / src).is_file(), src
    # The run ids a reader can paste into MLflow.
    assert '<code class="id">d-gru-single-0-0</code>' in page
    # The README leads with the verdict and the heat map, then across datasets, then datasets.
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert readme.index("**Single best") < readme.index("![heat map of mean skill]"
                                                       "(figures/heatmap.png)") \
        < readme.index("## Across datasets") < readme.index("## Per dataset") \
        < readme.index("## What was run")
    assert (tmp_path / "figures" / "heatmap.png").is_file()


@pytest.mark.slow
def test_page_loads_nothing_from_a_network(tmp_path):
    build_from_record(_record(tmp_path), tmp_path)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page, re.I)
    assert not re.search(r"url\(|@import|<link\b|<iframe\b|<object\b|<embed\b", page, re.I)
    assert "http://" not in page and "https://" not in page
    # The style and the script are inline, and the page has no machine paths in it.
    assert page.count("<style>") == 1 and page.count("<script>") == 1
    assert "<script src" not in page
    assert str(tmp_path) not in page


@pytest.mark.slow
def test_page_is_the_same_bytes_on_every_build(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    path = _record(first)
    shutil.copytree(path, second / "record")
    build_from_record(path, first)
    assert report_main(["--from", str(second / "record")]) == 0
    for name in ("index.html", "README.md", "figures/heatmap.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_no_html_skips_the_page(tmp_path, capsys):
    path = _record(tmp_path)
    assert report_main(["--from", str(path), "--no-html"]) == 0
    assert not (tmp_path / "index.html").exists() and (tmp_path / "README.md").is_file()
    assert "index.html" not in capsys.readouterr().out


def test_path_rewriting_leaves_the_style_and_the_script_alone():
    # build.py rewrites absolute paths over the whole page; "(/^" or " /*" would read as one.
    for text in (html.STYLE, html.SCRIPT):
        assert record.relative_paths(mask(text)) == text


def test_runs_block_gives_the_mlflow_command_for_a_local_store():
    runs = [FinalRun("gru-single", 0, "abc123")]
    local = html.runs_block(runs, "sqlite:///mlflow.db")
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in local
    assert '<code class="id">abc123</code>' in local and "/#/runs/abc123" in local
    elsewhere = html.runs_block(runs, "postgresql://bench:***@db/mlflow")
    assert "mlflow ui" not in elsewhere and '<code class="id">abc123</code>' in elsewhere
    assert html.runs_block([], "sqlite:///mlflow.db") == ""


def test_markdown_subset_converts():
    text = "\n".join([
        "**Single best: `a*b`.** Then *italic* and `<x>`.", "",
        markdown.table(["name", "value"], [["`gru`", "1.5"]]), "",
        "- one", "- two", "", "![alt](figures/x.png)", "", "```yaml", "a: <b>", "```"])
    out = html.md_to_html(text)
    assert "<strong>Single best: <code>a*b</code>.</strong>" in out
    assert "<em>italic</em>" in out and "<code>&lt;x&gt;</code>" in out
    assert '<th class="r">value</th>' in out and '<td class="r">1.5</td>' in out
    assert "<ul><li>one</li><li>two</li></ul>" in out
    assert '<img src="figures/x.png" alt="alt">' in out
    assert "<pre><code>a: &lt;b&gt;</code></pre>" in out


@pytest.mark.slow
def test_page_works_in_a_browser(tmp_path):
    """docs/report_html.sh: no console error, every image loads, sorting and opening work."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium); "
                    "the browser check of index.html needs it")
    build_from_record(_record(tmp_path), tmp_path)
    shot = tmp_path / "shot.png"
    run = subprocess.run(["bash", str(ROOT / "docs" / "report_html.sh"),
                          str(tmp_path / "index.html"), str(shot)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sorted by gru-single and opened ds-" in run.stdout
    for png in (shot, tmp_path / "shot_open.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
