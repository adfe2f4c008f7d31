"""The report's figures, drawn so that the same results always give the same bytes.

PNG files carry a ``Software`` chunk with matplotlib's version and nothing else that varies, so
it is dropped; the style is pinned with ``rc_context`` so that a user's matplotlibrc cannot
change the output either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PNG_METADATA = {"Software": None}
STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "path.simplify": False,
    "svg.hashsalt": "bench-report",
}


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def cd_diagram(average_ranks: pd.Series, pvalues: pd.DataFrame, cd: float | None, alpha: float,
               title: str):
    """Critical-difference diagram (scikit-posthocs draws it; bars join architectures whose
    pairwise p-value, Wilcoxon-Holm or Nemenyi, is at least alpha; ``cd`` draws a Nemenyi
    critical-difference ruler when given)."""
    import scikit_posthocs as sp

    ranks = average_ranks.iloc[np.lexsort((np.array(average_ranks.index, dtype=str),
                                           average_ranks.to_numpy(float)))]
    k = len(ranks)
    with matplotlib.rc_context(matplotlib.rcParamsDefault), matplotlib.rc_context(
        {**STYLE, "axes.grid": False}
    ):
        fig, ax = plt.subplots(figsize=(8, 1.6 + 0.3 * k))
        artists = sp.critical_difference_diagram(
            ranks, pvalues.loc[ranks.index, ranks.index], cd=cd, alpha=alpha, ax=ax,
            label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
            color_palette=[plt.get_cmap("tab10")(i % 10) for i in range(k)],
        )
        _stable_crossbars(artists["crossbars"])
        ax.set_xlim(1, max(k, float(ranks.iloc[0]) + (cd or 0.0)) + 0.05)
        ax.set_title(title, fontsize=9, pad=28)
        fig.tight_layout()
    return fig


def _stable_crossbars(crossbars) -> None:
    """scikit-posthocs draws each crossbar from a Python set, so its point order and the
    stacking of bars that start at the same rank follow string hashing, which changes from
    one process to the next; re-sort the points and re-stack the bars by (start, end)."""
    lines = [line for group in crossbars for line in group]
    spans = sorted(
        ((float(np.min(ln.get_xdata())), float(np.max(ln.get_xdata())), ln) for ln in lines),
        key=lambda t: (t[0], t[1]),
    )
    levels: list[list[tuple[float, float]]] = []
    for low, high, line in spans:
        for i, taken in enumerate(levels):
            if not any(low <= h and lo <= high for lo, h in taken):
                taken.append((low, high))
                level = i
                break
        else:
            levels.append([(low, high)])
            level = len(levels) - 1
        xs = np.sort(np.asarray(line.get_xdata(), dtype=float))
        line.set_data(xs, np.full_like(xs, -level - 1.0))


def learning_curves(
    curves: Mapping[str, list[list[tuple[int, float]]]], ylabel: str, title: str,
    naive: list[tuple[int, float]] | None = None,
):
    """Validation metric per epoch, mean over seeds (line) with the seeds' range (band)."""
    with matplotlib.rc_context(matplotlib.rcParamsDefault), matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4))
        cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
        for i, (arch, runs) in enumerate(sorted(curves.items())):
            runs = [r for r in runs if r]
            if not runs:
                continue
            length = max(len(r) for r in runs)
            grid = np.full((len(runs), length), np.nan)
            for j, r in enumerate(runs):
                grid[j, : len(r)] = [v for _, v in r]
            x = np.arange(1, length + 1)
            mean = np.nanmean(grid, axis=0)
            ax.plot(x, mean, label=arch, color=cmap(i % cmap.N), linewidth=1.2)
            if len(runs) > 1:
                ax.fill_between(x, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0),
                                color=cmap(i % cmap.N), alpha=0.12, linewidth=0)
        if naive:
            ax.axhline(float(np.mean([v for _, v in naive])), color="black", linestyle="--",
                       linewidth=1, label="naive")
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, ncol=2, loc="best")
        fig.tight_layout()
    return fig
