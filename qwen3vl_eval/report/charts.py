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


def _finish(fig, path: Path, footer: str) -> Path:
    fig.text(0.01, 0.01, footer, fontsize=7, ha="left", va="bottom", wrap=True, color="#444444")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


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
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, alpha=0.3)
        if any(ax.get_legend_handles_labels()[1]):
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _finish(fig, path, footer)


def grouped_bars(path: Path, categories: Sequence[str], series: dict[str, Sequence[float | None]], *,
                 title: str, ylabel: str, footer: str) -> Path:
    """Bars per category, one colour per series; None is drawn as no bar."""
    plt = _plt()
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(1, len(series)) + 2), 4.5))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(categories))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=label)
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
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
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    return _finish(fig, path, footer)
