"""The report of a study as one static page, ``index.html``: the same
:class:`~bench.report.model.StudyReport` as the README, laid out to be looked at.

The page words the evidence with :mod:`bench.report.markdown`'s own sentences and tables
(converted here, so the two renderings cannot drift apart) and adds what a browser does better:
the heat map as a table sortable by any architecture, one collapsible section per dataset, and
the MLflow run id of every final run. It loads nothing from a network and needs no server: the
style and the small script are inline, and the figures are the PNG files beside it, referenced
by relative path as the README references them. Nothing in it depends on when or where it was
written, so the same record gives the same bytes.
"""

from __future__ import annotations

import re
from html import escape

from bench import tracking
from bench.report import figures, markdown
from bench.report.formatting import skill as skill_fmt
from bench.report.model import DatasetSection, FinalRun, Heatmap, StudyReport
from bench.results.record import RECORD_NAME

HTML_NAME = "index.html"

# No CSS comments: build.py rewrites absolute paths in the page, and "/*" after a space reads
# as one.
STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #ffffff;
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main, header { max-width: 1360px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.35em; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.12em; margin: 24px 0 8px; }
h4 { font-size: 1em; margin: 20px 0 6px; }
p, ul { margin: 8px 0; }
code { font: 0.86em/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  background: var(--bg-soft); padding: 1px 4px; border-radius: 4px; }
pre { background: var(--bg-soft); padding: 12px; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.note { color: var(--muted); font-size: 0.9em; }
nav { margin: 10px 0 0; font-size: 0.92em; }
nav a { margin-right: 14px; white-space: nowrap; }
.verdict { border: 1px solid var(--line); border-left: 6px solid var(--accent); border-radius: 6px;
  padding: 8px 18px; margin: 20px 0; background: #fbfcfd; }
.verdict > p:first-child { font-size: 1.15em; }
.wrap { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
thead th { background: var(--bg-soft); position: sticky; top: 0; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td code, td.nw { white-space: nowrap; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th:hover { background: #eaeef2; }
th[aria-sort=descending]::after { content: " \\25BC"; font-size: 0.75em; }
th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 0.75em; }
table.heat td { text-align: center; min-width: 64px; padding: 3px 6px; line-height: 1.2; }
table.heat td small { display: block; font-size: 0.78em; opacity: 0.85; }
table.heat td.top { box-shadow: inset 0 0 0 2px #000000; font-weight: 700; }
table.heat td.na { background: #eeeeee; color: var(--muted); }
table.heat tbody th { text-align: left; font-weight: 600; white-space: nowrap; vertical-align: middle; }
table.heat tbody tr.out th { font-weight: 400; font-style: italic; }
table.heat tfoot td, table.heat tfoot th { background: var(--bg-soft); font-weight: 600; }
.legend { font-size: 0.88em; color: var(--muted); }
.swatch { display: inline-block; width: 120px; height: 10px; vertical-align: middle; border: 1px solid var(--line);
  background: linear-gradient(to right, #67001f, #f7f7f7 50%, #053061); }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; background: #ffffff; }
details > summary { cursor: pointer; padding: 8px 14px; background: var(--bg-soft); border-radius: 6px; }
details[open] > summary { border-bottom: 1px solid var(--line); border-radius: 6px 6px 0 0; }
details > .body { padding: 4px 18px 12px; }
details.dataset > summary { font-size: 1.05em; }
summary .role { font-size: 0.8em; color: var(--muted); margin-left: 8px; }
summary .top { font-size: 0.85em; color: var(--muted); margin-left: 8px; }
code.id { user-select: all; }
footer { max-width: 1360px; margin: 40px auto 24px; padding: 0 24px; color: var(--muted); font-size: 0.88em; }
"""

# Sorts any table.sortable by the clicked column (numbers from data-v, else the cell's text),
# keeps empty cells last, and opens the <details> a link's #anchor names. No regular-expression
# literals: build.py's rewriting of absolute paths would read "(/^..." as one.
SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (raw === "" || raw === "n/a") { return null; }
    var x = parseFloat(raw.replace(new RegExp("^[<>]"), "").split(",").join(""));
    return isNaN(x) ? raw.toLowerCase() : x;
  }
  function compare(a, b) {
    if (a === null || b === null) { return a === b ? 0 : (a === null ? 1 : -1); }
    if (typeof a !== typeof b) { return typeof a === "number" ? -1 : 1; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  function sortBy(table, th, col) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return typeof key(r.cells[col]) === "number"; });
    var current = th.getAttribute("aria-sort");
    var order = current ? (current === "descending" ? "ascending" : "descending")
                        : (numeric ? "descending" : "ascending");
    var sign = order === "descending" ? -1 : 1;
    var keyed = rows.map(function (r, i) { return [key(r.cells[col]), i, r]; });
    keyed.sort(function (x, y) {
      if (x[0] === null || y[0] === null) { return compare(x[0], y[0]) || x[1] - y[1]; }
      return sign * compare(x[0], y[0]) || x[1] - y[1];
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", order);
    keyed.forEach(function (k) { body.appendChild(k[2]); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = th.title || "sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") { el.open = true; el.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
"""


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def render(report: StudyReport) -> str:
    """The whole page, top to bottom: the verdict, the heat map, the comparison across
    datasets, then one collapsible section per dataset and the rest of the README's evidence."""
    study = report.study
    title = f"Study {study}: is there a single best recurrent model?"
    sections = [
        ("verdict", "Verdict"), ("heatmap", "Heat map"), ("across", "Across datasets"),
        ("datasets", "Per dataset"), ("what-was-run", "What was run"),
        ("convergence", "Convergence"), ("sensitivity", "Sensitivity"),
        ("variance", "Variance"), ("claims", "Reference claims"),
    ]
    body = [
        "<header>",
        f"<h1>Study <code>{escape(study)}</code>: is there a single best recurrent model?</h1>",
        f'<p class="note">Generated by <code>python -m bench.report</code> from the tidy record '
        f"<code>{RECORD_NAME}/</code> beside this file, as <code>README.md</code> is; "
        "regenerating from the same record gives this page byte for byte.</p>",
        "<nav>" + "".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in sections) + "</nav>",
        "</header>",
        "<main>",
        _verdict(report),
        _heatmap_section(report.heatmap, report.across.ranking),
        _section("across", markdown.across(report.across)),
        _datasets(report),
        _section("what-was-run", markdown.what_was_run(report.what_was_run, study)),
        _section("convergence", markdown.convergence(report.convergence)),
    ]
    if report.sensitivity is not None:
        body.append(_section("sensitivity", markdown.sensitivity(report.sensitivity)))
    body += [
        _section("variance", markdown.variance(report.variance)),
        _section("claims", markdown.claims(report)),
        "</main>",
        "<footer>" + md_to_html(
            f"Files beside this page: `README.md` (this report as text), `results.csv` (one row "
            f"per final run, with its MLflow run id), `{RECORD_NAME}/` (the tidy record the "
            "report is built from), `figures/`.") + "</footer>",
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])


def _section(anchor: str, text: str) -> str:
    return f'<section id="{anchor}">\n{md_to_html(text)}\n</section>'


def _verdict(report: StudyReport) -> str:
    """The answer and what bounds it in a box; the per-dataset detail folded under it."""
    v = report.verdict
    top = [*markdown.headline_lines(report), ""]
    if v.progress is not None:
        top = [markdown.progress(v.progress, report.study), "", *top]
    top += markdown.verdict_caveats(report)
    per_ds = markdown.verdict_per_dataset(v.verdict)
    detail = (["Per dataset:", "", *per_ds, ""] if per_ds else []) + [markdown.verdict_method(v)]
    return "\n".join([
        '<section id="verdict">',
        "<h2>Verdict</h2>",
        '<div class="verdict">',
        md_to_html("\n".join(top)),
        "</div>",
        '<details id="verdict-detail"><summary>The verdict per dataset, and how it is '
        'computed</summary><div class="body">',
        md_to_html("\n".join(detail)),
        "</div></details>",
        "</section>",
    ])


# ---------------------------------------------------------------------------------------------
# The heat map
# ---------------------------------------------------------------------------------------------


def dataset_anchor(dataset: str) -> str:
    return "ds-" + re.sub(r"[^A-Za-z0-9_-]", "-", dataset)


def _heatmap_section(h: Heatmap | None, ranking) -> str:
    head = '<section id="heatmap">\n<h2>Mean skill per dataset and architecture</h2>'
    if h is None:
        return head + "\n<p>No dataset with a candidate yet.</p>\n</section>"
    legend = (
        '<p class="legend"><span class="swatch"></span> mean skill over seeds, -1 or below '
        "(red) to 0, the no-skill reference (white), to 1, perfect (blue). The number is the "
        "rank within the dataset (1 = best), the small one the skill; <b>outlined and bold</b>: "
        "in the dataset's top group; \u2021: the cell did not fit its training data; \u2020: it "
        "did not converge; <i>italic</i> datasets are "
        "outside the verdict. Click a column header to sort the datasets by that architecture's "
        "skill (again to reverse), a dataset to open its section.</p>")
    return "\n".join([head, legend, '<div class="wrap">', heatmap_table(h, ranking), "</div>",
                      "</section>"])


def heatmap_table(h: Heatmap, ranking) -> str:
    """Datasets as rows and architectures as columns, each cell coloured as the PNG colours it;
    a footer row with the average rank across the datasets in the verdict."""
    head = ['<th data-col="dataset">dataset</th>'] + [
        f'<th class="r" data-col="{escape(a)}">{escape(a)}</th>' for a in h.archs]
    rows = []
    for r in h.rows:
        out = r.role != "verdict"
        label = escape(r.dataset) + (f" ({escape(r.role)})" if out else "")
        cells = [f'<th scope="row" data-v="{escape(r.dataset)}">'
                 f'<a href="#{dataset_anchor(r.dataset)}">{label}</a></th>']
        for a in h.archs:
            c = r.cells.get(a)
            if c is None:
                cells.append('<td class="na" data-v="" title="not run">\u2013</td>')
                continue
            bg, fg = figures.skill_colour(c.skill)
            marks = figures.cell_mark(c.fitted, c.converged)
            notes = [f"skill {skill_fmt(c.skill)}", f"rank {figures.rank_label(c.rank)}"]
            notes += ["top group"] if c.top else []
            notes += (["did not fit"] if not c.fitted else
                      ["not converged"] if not c.converged else [])
            cls = ' class="top"' if c.top else ""
            cells.append(
                f'<td{cls} style="background:{bg};color:{fg}" data-v="{c.skill:.6g}" '
                f'title="{escape(r.dataset)}, {escape(a)}: {", ".join(notes)}">'
                f"{figures.rank_label(c.rank)}{marks}<small>{skill_fmt(c.skill)}</small></td>")
        rows.append(("<tr class=\"out\">" if out else "<tr>") + "".join(cells) + "</tr>")
    avg = {r.arch: r.average_rank for r in ranking}
    foot = []
    if avg:
        foot = ["<tfoot><tr><th>average rank (verdict)</th>" + "".join(
            f'<td class="r">{avg[a]:.2f}</td>' if a in avg else '<td class="r"></td>'
            for a in h.archs) + "</tr></tfoot>"]
    return "\n".join(['<table class="heat sortable" id="heatmap-table">',
                      "<thead><tr>" + "".join(head) + "</tr></thead>",
                      "<tbody>", *rows, "</tbody>", *foot, "</table>"])


# ---------------------------------------------------------------------------------------------
# Per dataset
# ---------------------------------------------------------------------------------------------


def _datasets(report: StudyReport) -> str:
    out = ['<section id="datasets">', "<h2>Per dataset</h2>"]
    if report.skipped:
        out.append(md_to_html("\n".join(["Datasets listed but not run:", "", *[
            f"- `{s.dataset}`: not run ({s.reason})" for s in report.skipped]])))
    if not report.datasets:
        out.append("<p>No final runs yet.</p>")
    stores = report.what_was_run.stores
    for s in report.datasets:
        out.append(dataset_details(s, stores[0] if stores else None))
    out.append("</section>")
    return "\n".join(out)


def dataset_details(s: DatasetSection, mlflow_uri: str | None) -> str:
    """One dataset, folded: its summary line says the anchor and the top group's size, so the
    closed list already reads as a table of contents."""
    role = {"side": "side experiment", "no skill": "no skill: outside the verdict"}.get(s.role, "")
    name = f" (dataset <code>{escape(s.name)}</code>)" if s.name != s.dataset else ""
    summary = (f"<summary><b>{escape(s.dataset)}</b>{name}"
               + (f'<span class="role">{escape(role)}</span>' if role else "")
               + f'<span class="top">anchor <code>{escape(s.anchor)}</code>; top group of '
               f"{len(s.top_group)}</span></summary>")
    parts = [
        *markdown.role_note(s),
        markdown.leaderboard(s.leaderboard, s.units), "",
        *markdown.published(s),
        *markdown.groups(s),
        *markdown.figures(s), "",
        markdown.rope(s), "", markdown.power(s), "",
    ]
    reading = md_to_html(markdown.legend(s))
    tuning = md_to_html("\n".join(["#### Tuning and hyperparameter importance", "",
                                   *markdown.tuning(s.tuning)]))
    return "\n".join([
        f'<details class="dataset" id="{dataset_anchor(s.dataset)}">',
        summary,
        '<div class="body">',
        md_to_html("\n".join(parts)),
        f"<details><summary>How to read the leaderboard</summary>"
        f'<div class="body">{reading}</div></details>',
        tuning,
        runs_block(s.runs, mlflow_uri),
        "</div>",
        "</details>",
    ])


def mlflow_command(uri: str | None) -> str | None:
    """The command that serves a local SQLite store; None for any other store (a server is
    already browsable, a database needs its password)."""
    if uri is None or not uri.startswith("sqlite:"):
        return None
    return f"mlflow ui --backend-store-uri {uri}"


def runs_block(runs: list[FinalRun], mlflow_uri: str | None) -> str:
    """Every run behind the leaderboard by its MLflow run id (a click selects the whole id)."""
    if not runs:
        return ""
    command = mlflow_command(mlflow_uri)
    base = f"http://127.0.0.1:{tracking.UI_PORT}"
    if command is not None:
        how = (f"<p>The study's MLflow store is a local SQLite file: <code>{escape(command)}"
               f"</code> from the project root serves it, and then each <i>open</i> link below "
               f"shows its run (<code>{base}/#/runs/&lt;run id&gt;</code>).</p>")
    else:
        how = ("<p>Open a run in the MLflow UI of the study's store at <code>&lt;MLflow UI&gt;"
               "/#/runs/&lt;run id&gt;</code>, or search for it there with <code>"
               "attributes.run_id = '&lt;run id&gt;'</code>.</p>")
    rows = []
    for r in runs:
        link = (f'<td><a href="{base}/#/runs/{escape(r.run_id)}">open</a></td>'
                if command is not None else "")
        rows.append(f'<tr><td><code>{escape(r.arch)}</code></td><td class="r">{r.seed}</td>'
                    f'<td><code class="id">{escape(r.run_id)}</code></td>{link}</tr>')
    return "\n".join([
        f"<details><summary>The {len(runs)} runs in MLflow</summary>",
        '<div class="body">', how, '<div class="wrap"><table class="sortable">',
        "<thead><tr><th>architecture</th><th class=\"r\">seed</th><th>MLflow run id</th>"
        + ("<th>MLflow UI</th>" if command is not None else "") + "</tr></thead>",
        "<tbody>", *rows, "</tbody></table></div>", "</div></details>"])


# ---------------------------------------------------------------------------------------------
# The README's Markdown, as HTML
# ---------------------------------------------------------------------------------------------

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
_HEADING = re.compile(r"^(#{1,6}) (.*)$")


def md_to_html(text: str) -> str:
    """The Markdown that :mod:`bench.report.markdown` writes (headings, paragraphs, lists,
    pipe tables, images, code fences, inline code, bold, italics) as HTML; nothing more, so that
    the page shows the README's sentences without a Markdown package."""
    lines = text.split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + inline(" ".join(para)) + "</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
        elif line.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
            continue
        elif line.startswith("- "):
            flush()
            j = i
            while j < len(lines) and lines[j].startswith("- "):
                j += 1
            out.append("<ul>" + "".join(f"<li>{inline(x[2:])}</li>" for x in lines[i:j])
                       + "</ul>")
            i = j
            continue
        elif (image := _IMAGE.match(line)) is not None:
            flush()
            alt, src = image.groups()
            out.append(f'<figure><img src="{escape(src)}" alt="{escape(alt)}"></figure>')
        elif not line.strip():
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def _table(lines: list[str]) -> str:
    header = _cells(lines[0])
    align = ["r" if c.strip().endswith(":") and not c.strip().startswith(":") else "l"
             for c in lines[1].strip().strip("|").split("|")] if len(lines) > 1 else []
    align += ["l"] * (len(header) - len(align))

    def cls(j: int, text: str = "") -> str:
        # Short labels stay on one line (a wrapped "anchor (best candidate)" doubles a row's
        # height); long prose cells wrap.
        if align[j] == "r":
            return ' class="r"'
        return ' class="nw"' if 0 < len(text) <= 32 else ""

    head = "".join(f"<th{cls(j)}>{inline(c)}</th>" for j, c in enumerate(header))
    body = []
    for line in lines[2:]:
        cells = _cells(line)
        body.append("<tr>" + "".join(f"<td{cls(min(j, len(align) - 1), c)}>{inline(c)}</td>"
                                     for j, c in enumerate(cells)) + "</tr>")
    return ('<div class="wrap"><table class="sortable"><thead><tr>' + head + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def inline(text: str) -> str:
    """Inline code first (its content is literal, and may sit inside bold), then bold and
    italics in the rest."""
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    s = escape(re.sub(r"`([^`]*)`", keep, text), quote=False)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"<em>\1</em>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], s)
