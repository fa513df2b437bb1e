"""PNG charts for reports (matplotlib, Agg backend, imported only when a chart is drawn).

Every chart carries a footer line naming what it measured (model, dtype, device, versions, date), so a figure
copied out of its report still says where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


FONT = 10  # points: tick labels and legends, readable at the saved size
DPI = 110
MAX_COLS = 3  # panels per row of a faceted chart


def _finish(fig, path: Path, footer: str) -> Path:
    fig.text(0.01, 0.01, footer, fontsize=8, ha="left", va="bottom", wrap=True, color="#444444")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def _wrap(label: str, width: int = 16) -> str:
    """A tick label broken into lines of at most `width` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(label.replace(":", ": "), width)) or label


# label -> (x values, y values) or (x values, y values, (low, high) error-bar span or None per point)
Series = dict[str, tuple[Sequence[float], Sequence[float | None]]
                   | tuple[Sequence[float], Sequence[float | None], Sequence[tuple[float, float] | None]]]


def line_panels(path: Path, panels: Sequence[tuple[str, str, Series]], *, title: str, xlabel: str, footer: str,
                log_x: bool = True) -> Path:
    """Side-by-side panels (panel title, y label, series); each series label maps to (x values, y values[,
    error-bar spans]), with None y values left out."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.5), squeeze=False)
    for ax, (name, ylabel, series) in zip(axes[0], panels):
        xs_all: set[float] = set()
        for label, (xs, ys, *rest) in series.items():
            spans = rest[0] if rest else [None] * len(xs)
            pts = [(x, y, s) for x, y, s in zip(xs, ys, spans) if y is not None]
            if pts:
                line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)[0]
                bars = [p for p in pts if p[2] is not None]
                if bars:
                    ax.errorbar([p[0] for p in bars], [p[1] for p in bars], fmt="none", capsize=3,
                                color=line.get_color(), yerr=[[max(0.0, p[1] - p[2][0]) for p in bars],
                                                              [max(0.0, p[2][1] - p[1]) for p in bars]])
                xs_all.update(p[0] for p in pts)
        if log_x and xs_all:
            ax.set_xscale("log", base=2)
            ticks = sorted(xs_all)
            ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
            ax.minorticks_off()
        ax.set_ylim(bottom=0)  # amounts (tokens/s, ms): from zero, so differences are not exaggerated
        ax.yaxis.set_major_formatter(_plt().FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, alpha=0.3)
        if any(ax.get_legend_handles_labels()[1]):
            ax.legend(fontsize=FONT - 1)
    fig.suptitle(title)
    return _finish(fig, path, footer)


def grouped_bars(path: Path, categories: Sequence[str], series: dict[str, Sequence[float | None]], *,
                 title: str, ylabel: str, footer: str) -> Path:
    """Bars per category, one colour per series; None is drawn as no bar."""
    plt = _plt()
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.9 * len(categories) * max(1, len(series)) + 2)), 4.5))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(categories))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=label)
    ax.set_xticks(range(len(categories)), [_wrap(c, 18) for c in categories], rotation=30, ha="right",
                  fontsize=FONT - 1)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="y", labelsize=FONT)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=FONT - 1)
    return _finish(fig, path, footer)


def delta_chart(path: Path, labels: Sequence[str], deltas: Sequence[float],
                intervals: Sequence[tuple[float, float] | None], *, title: str, xlabel: str, footer: str) -> Path:
    """Horizontal dots for deltas with their confidence intervals as error bars, and a zero line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.4 * len(labels) + 1.5)))
    ys = list(range(len(labels)))
    for y, d, ci in zip(ys, deltas, intervals):
        color = "#b2182b" if d < 0 else "#2166ac"
        if ci is not None:
            ax.errorbar(d, y, xerr=[[d - ci[0]], [ci[1] - d]], fmt="o", color=color, capsize=3)
        else:
            ax.plot(d, y, "o", color=color, mfc="none")
    ax.axvline(0.0, color="#888888", lw=1)
    ax.set_yticks(ys, labels, fontsize=FONT)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(True, axis="x", alpha=0.3)
    return _finish(fig, path, footer)


def hbars(path: Path, labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str, footer: str,
          xmax: float = 100.0) -> Path:
    """One horizontal bar per label, its value written beside it, on an axis from 0 to `xmax`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, max(2.5, 0.45 * len(labels) + 1.6)))
    ys = list(range(len(labels)))
    ax.barh(ys, values, color="#2166ac")
    for y, v in zip(ys, values):
        ax.text(min(v, xmax) + xmax * 0.01, y, f"{v:.2f}", va="center", fontsize=FONT)
    ax.set_yticks(ys, labels, fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.1)
    ax.set(title=title, xlabel=xlabel)
    ax.tick_params(labelsize=FONT)
    ax.grid(True, axis="x", alpha=0.3)
    return _finish(fig, path, footer)


def faceted_bars(path: Path, facets: Sequence[tuple[str, Sequence[str], dict[str, Sequence[float | None]]]], *,
                 title: str, xlabel: str, footer: str, xmax: float | None = 100.0) -> Path:
    """One small panel per facet (title, categories, series -> values), at most `MAX_COLS` per row: horizontal
    bars, categories down the side (long names stay readable), one colour per series (the same in every panel;
    one legend); None is no bar."""
    import math

    plt = _plt()
    n = max(1, len(facets))
    cols = min(MAX_COLS, n)
    rows = math.ceil(n / cols)
    per_row = [max([len(f[1]) * max(1, len(f[2])) for f in facets[r * cols:(r + 1) * cols]] or [1])
               for r in range(rows)]
    heights = [max(1.6, 0.2 * k + 0.8) for k in per_row]
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, sum(heights) + 0.9), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    handles: dict[str, object] = {}
    for ax, (name, categories, series) in zip(axes.flat, facets):
        height = 0.8 / max(1, len(series))
        for k, (label, values) in enumerate(series.items()):
            ys = [i + (k - (len(series) - 1) / 2) * height for i in range(len(categories))]
            bars = ax.barh(ys, [v if v is not None else 0.0 for v in values], height=height, label=label,
                           color=f"C{k}")
            handles.setdefault(label, bars)
        ax.set_yticks(range(len(categories)), list(categories), fontsize=FONT - 1)
        ax.invert_yaxis()
        if xmax is not None:  # a value above it (another scale) still shows
            top = max([xmax, *(v for vals in series.values() for v in vals if v is not None)])
            ax.set_xlim(0, top * (1.0 if top == xmax else 1.05))
        ax.set_title(name, fontsize=FONT + 1)
        ax.set_xlabel(xlabel, fontsize=FONT - 1)
        ax.tick_params(axis="x", labelsize=FONT - 1)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(facets):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=FONT, ncol=min(4, len(handles)))
    fig.suptitle(title, fontsize=FONT + 2, x=0.01, ha="left")
    return _finish(fig, path, footer)
