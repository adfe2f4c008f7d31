"""Builds ``reports/<study>/``: README.md, index.html, results.csv and figures, all from the
tidy record.

Every number in the README is computed from the record (:mod:`bench.report.content`) before a
word of it is written (:mod:`bench.report.markdown`; :mod:`bench.report.html` renders the
same structure as a page), and the verdict comes from the same
tables the README prints, so the prose cannot disagree with the evidence. Nothing depends on
when or where the report is generated: regenerating from the same record gives the same bytes.
Reading the stores is a separate first step (:func:`build` writes the record, then builds from
the file), so a report built from MLflow and one rebuilt from the committed record are the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.report import content, html, markdown, stats
from bench.report.collect import results_table, study_data
from bench.report.content import Fetch, Figures
from bench.results import reader, record
from bench.results.reader import read_artifact
from bench.results.sessions import close_interrupted
from bench.stores import StoreAddress, mask


def build_from_record(
    path: Path, out: Path, *, alpha: float = stats.ALPHA, test: str = "welch",
    fetch: Fetch | None = None, write_html: bool = True,
) -> Path:
    """Writes README.md, index.html (unless not ``write_html``), results.csv and figures into
    ``out`` from the tidy record alone; ``fetch`` copies run artifacts (prediction plots) when
    the MLflow store is at hand."""
    data = study_data(record.read(path))
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures(out / "figures")
    results_table(data).to_csv(out / "results.csv", index=False, lineterminator="\n")
    report = content.compute(data, figs, alpha=alpha, test=test, fetch=fetch)
    figs.prune()
    text = record.relative_paths(mask(markdown.render(report)))
    (out / "README.md").write_text(text, encoding="utf-8")
    if write_html:
        page = record.relative_paths(mask(html.render(report)))
        (out / html.HTML_NAME).write_text(page, encoding="utf-8")
    return out


def _store_fetch(store: StoreAddress) -> Fetch:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.connect())

    def fetch(run_id: str, artifact: str, dest: Path) -> bool:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return read_artifact(client, run_id, artifact, lambda p: shutil.copyfile(p, dest)) is not None

    return fetch


def build(
    study: str, store: StoreAddress, out: Path, *, alpha: float = stats.ALPHA, test: str = "welch",
    storage: str | None = None, keep: bool = True, write_html: bool = True,
) -> Path:
    """From the stores: writes the record ``out/record/``, then builds the report from it.

    With ``keep`` (the default) runs of the existing record in ``out`` that the stores lack
    stay in it: a study resumed on another machine or from a fresh clone has its earlier
    sessions only there. Runs deleted in MLflow leave it (:func:`bench.results.reader.withdrawn`).
    """
    path = out / record.RECORD_NAME
    existing = record.locate(out) if keep else None
    committed = record.read(existing) if existing is not None else None
    try:
        fresh = reader.from_store(store, study, storage=storage)
    except LookupError:
        if committed is None:
            raise
        fresh = None
    from mlflow.tracking import MlflowClient

    gone = reader.withdrawn(MlflowClient(tracking_uri=store.connect()), study)
    rows = record.withdraw(record.merge(fresh, committed), gone)
    rec = record.write(close_interrupted(rows, superseded_only=True), path)
    return build_from_record(rec, out, alpha=alpha, test=test, fetch=_store_fetch(store),
                             write_html=write_html)

