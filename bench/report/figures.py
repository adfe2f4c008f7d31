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


# Skill is coloured on one fixed scale, so that a colour means the same in every study and in
# both renderings: 0 (the no-skill reference) is white, 1 (perfect) full blue, -1 or worse
# full red.
SKILL_CMAP = "RdBu"
SKILL_RANGE = (-1.0, 1.0)


def _skill_norm():
    from matplotlib.colors import TwoSlopeNorm

    return TwoSlopeNorm(vmin=SKILL_RANGE[0], vcenter=0.0, vmax=SKILL_RANGE[1])


def skill_colour(x: float) -> tuple[str, str]:
    """The heat map's fill for a skill score and a text colour that reads on it, as hex, so
    that the HTML table shows the PNG's colours."""
    if x is None or not np.isfinite(x):
        return "#eeeeee", "#000000"
    v = float(_skill_norm()(float(np.clip(x, *SKILL_RANGE))))
    r, g, b, _ = plt.get_cmap(SKILL_CMAP)(v)
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    hexa = "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))
    return hexa, "#ffffff" if luminance < 0.45 else "#000000"


NOT_FITTED, NOT_CONVERGED = "\u2021", "\u2020"


def cell_mark(fitted: bool, converged: bool) -> str:
    """The mark behind a heat-map cell's rank: a double dagger where the cell did not fit its
    training data (it learned next to nothing; it also never converged), else a dagger where
    its budget ran out before it converged."""
    return NOT_FITTED if not fitted else (NOT_CONVERGED if not converged else "")


def rank_label(rank: float) -> str:
    """A rank as the cell shows it: whole ranks plain, shared ones with their half."""
    return "" if not np.isfinite(rank) else f"{rank:g}"


def heatmap(skill: list[list[float]], rank: list[list[float]], top: list[list[bool]],
            marks: list[list[str]], rows: list[str], cols: list[str], title: str):
    """Datasets (rows) x architectures (columns): mean skill as colour, the rank within the
    dataset as text followed by the cell's mark (:func:`cell_mark`), the top group
    outlined."""
    from matplotlib.patches import Rectangle

    n, k = len(rows), len(cols)
    values = np.clip(np.asarray(skill, dtype=float).reshape(n, k), *SKILL_RANGE)
    with matplotlib.rc_context(matplotlib.rcParamsDefault), matplotlib.rc_context(
        {**STYLE, "axes.grid": False}
    ):
        fig, ax = plt.subplots(figsize=(max(6.0, 2.6 + 0.72 * k), 1.8 + 0.3 * n))
        cmap = plt.get_cmap(SKILL_CMAP).with_extremes(bad="#eeeeee")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=_skill_norm(),
                          aspect="auto", interpolation="nearest")
        for i in range(n):
            for j in range(k):
                if not np.isfinite(values[i, j]):
                    continue
                _, fg = skill_colour(float(values[i, j]))
                text = rank_label(rank[i][j]) + marks[i][j]
                ax.text(j, i, text, ha="center", va="center", color=fg, fontsize=8,
                        fontweight="bold" if top[i][j] else "normal")
                if top[i][j]:
                    ax.add_patch(Rectangle((j - 0.46, i - 0.44), 0.92, 0.88, fill=False,
                                           edgecolor="black", linewidth=1.4))
        ax.set_xticks(range(k), cols, rotation=35, ha="right")
        ax.set_yticks(range(n), rows)
        ax.tick_params(length=0)
        ax.set_title(title, fontsize=9)
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        bar.set_label("mean skill (0: no-skill reference, 1: perfect)", fontsize=8)
        fig.tight_layout()
    return fig
