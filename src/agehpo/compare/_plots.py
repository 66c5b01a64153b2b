"""The two plots of ``agehpo compare``, each an interactive HTML and a PNG.

The numbers behind a plot are computed once (:func:`band`, :func:`curves`). plotly draws the
HTML and matplotlib the PNG: plotly writes images only through kaleido and a Chrome, which an
offline machine may lack, and the PNG is what the MLflow UI previews.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import cycle
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from agehpo.compare._stats import StudyStats, by_sampler

CONVERGENCE = "Best val age accuracy so far (COMPLETE trials): median and min–max over repeats"
PRUNING = "Intermediate values: solid COMPLETE, dotted with x PRUNED"
ACCURACY = "val age accuracy (%)"


class Curve(NamedTuple):
    """One trial's intermediate values (%), by epoch."""

    label: str
    epochs: list[int]
    values: list[float]
    pruned: bool


def band(group: Sequence[StudyStats]) -> pd.DataFrame:
    """Best-so-far (%) by trial number from 1: median, min and max over the repeats that have
    a COMPLETE trial by then."""
    curves = pd.DataFrame({s.repeat: pd.Series(s.curve, dtype=float) for s in group})
    stats = (100 * curves).agg(["median", "min", "max"], axis=1).dropna()
    return stats.set_axis(stats.index + 1)


def curves(group: Sequence[StudyStats]) -> Iterator[Curve]:
    """Every trial of the group that reported an intermediate value."""
    for stats in group:
        for trial in (t for t in stats.trials if t.intermediate_values):
            epochs, values = zip(*sorted(trial.intermediate_values.items()), strict=True)
            label = f"{stats.study_name} #{trial.number} {trial.state.name}"
            pruned = trial.state == TrialState.PRUNED
            yield Curve(label, list(epochs), [100 * v for v in values], pruned)


def _coloured(all_stats: Sequence[StudyStats]) -> Iterator[tuple[str, str, list[StudyStats]]]:
    """(colour, sampler, its studies), one colour per sampler in both renderings."""
    for colour, (sampler, group) in zip(cycle(qualitative.Plotly), by_sampler(all_stats).items()):
        yield colour, sampler, group


def _panel_title(sampler: str, group: Sequence[StudyStats]) -> str:
    complete, pruned = sum(s.complete for s in group), sum(s.pruned for s in group)
    return f"{sampler}: {complete} complete, {pruned} pruned"


def convergence(all_stats: Sequence[StudyStats]) -> go.Figure:
    """Best-so-far by trial per sampler: the median line over a min–max band."""
    figure = go.Figure()
    for colour, sampler, group in _coloured(all_stats):
        stats, shared = band(group), {"legendgroup": sampler, "line_shape": "hv", "mode": "lines"}
        figure.add_scatter(x=stats.index, y=stats["max"], line_width=0, showlegend=False, **shared)
        low = {"fill": "tonexty", "line_width": 0, "opacity": 0.2, "name": f"{sampler} min–max"}
        figure.add_scatter(x=stats.index, y=stats["min"], line_color=colour, **low, **shared)
        median = {"line_color": colour, "name": f"{sampler} (median of {len(group)})"}
        figure.add_scatter(x=stats.index, y=stats["median"], **median, **shared)
    return figure.update_layout(title=CONVERGENCE, xaxis_title="trial", yaxis_title=ACCURACY)


def pruning(all_stats: Sequence[StudyStats]) -> go.Figure:
    """Every trial's intermediate values, a panel per sampler; dotted with an x where PRUNED."""
    coloured = list(_coloured(all_stats))
    titles = [_panel_title(sampler, group) for _, sampler, group in coloured]
    figure = make_subplots(cols=len(coloured), shared_yaxes=True, subplot_titles=titles)
    for col, (colour, _, group) in enumerate(coloured, 1):
        for curve in curves(group):
            end_marker = [0] * (len(curve.epochs) - 1) + [8 * curve.pruned]
            figure.add_scatter(
                x=curve.epochs,
                y=curve.values,
                name=curve.label,
                line={"color": colour, "dash": "dot" if curve.pruned else "solid"},
                marker={"symbol": "x", "size": end_marker},
                row=1,
                col=col,
            )
    figure.update_traces(mode="lines+markers", showlegend=False)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text=ACCURACY, col=1)
    return figure.update_layout(title=PRUNING)


def _convergence_png(all_stats: Sequence[StudyStats], path: Path) -> None:
    figure = Figure(figsize=(8, 5), dpi=100)  # no pyplot: the host's backend stays untouched
    ax = figure.add_subplot()
    for colour, sampler, group in _coloured(all_stats):
        stats = band(group)
        x, label = stats.index, f"{sampler} (median of {len(group)})"
        ax.fill_between(x, stats["min"], stats["max"], color=colour, alpha=0.2, step="post")
        ax.step(x, stats["median"], where="post", color=colour, label=label)
    ax.set(xlabel="trial", ylabel=ACCURACY)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(CONVERGENCE, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    figure.savefig(path, bbox_inches="tight")


def _pruning_png(all_stats: Sequence[StudyStats], path: Path) -> None:
    coloured = list(_coloured(all_stats))
    figure = Figure(figsize=(4.5 * len(coloured), 4.5), dpi=100)
    axes = figure.subplots(1, len(coloured), sharey=True, squeeze=False)[0]
    for ax, (colour, sampler, group) in zip(axes, coloured, strict=True):
        for curve in curves(group):
            style = ":" if curve.pruned else "-"
            ax.plot(curve.epochs, curve.values, color=colour, linestyle=style)
            if curve.pruned:
                ax.plot(curve.epochs[-1:], curve.values[-1:], marker="x", color=colour)
        ax.set_title(_panel_title(sampler, group), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ACCURACY)
    figure.suptitle(PRUNING, fontsize=11)
    figure.savefig(path, bbox_inches="tight")


def write_plots(all_stats: Sequence[StudyStats], folder: Path) -> None:
    """Write ``convergence`` and ``pruning`` as ``.html`` (plotly.js embedded) and ``.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw, draw_png in (
        ("convergence", convergence, _convergence_png),
        ("pruning", pruning, _pruning_png),
    ):
        draw(all_stats).write_html(folder / f"{name}.html", include_plotlyjs=True)
        draw_png(all_stats, folder / f"{name}.png")
