"""The two plots of ``agehpo compare``: convergence per sampler and every trial's curve.

Each is written twice: a PNG drawn with matplotlib (for the MLflow UI's preview) and an
interactive plotly HTML. Pure functions of the per-study numbers, like ``_compare_report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from optuna.trial import TrialState

from agehpo.compare._report import by_sampler

if TYPE_CHECKING:
    from agehpo.compare import StudyStats

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _band(group: Sequence[StudyStats]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Trial numbers (1-based) and median/min/max of best-so-far (%) over the repeats that
    have a COMPLETE trial by then."""
    n = max(len(s.curve) for s in group)
    xs, med, low, high = [], [], [], []
    for i in range(n):
        at_i = [s.curve[i] if i < len(s.curve) else None for s in group]
        values = pd.Series([100 * v for v in at_i if v is not None], dtype=float)
        if len(values):
            xs.append(i + 1)
            med.append(float(values.median()))
            low.append(float(values.min()))
            high.append(float(values.max()))
    return xs, med, low, high


def plot_convergence(all_stats: Sequence[StudyStats], folder: Path) -> None:
    """``convergence.png`` and ``.html``: best-so-far vs trial, median line, min–max band."""
    import plotly.graph_objects as go
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    groups = by_sampler(all_stats)
    # Figure + Agg canvas directly: no pyplot, so the host app's backend is never touched.
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    web = go.Figure()
    for colour, (sampler, group) in zip(COLOURS * 4, groups.items(), strict=False):
        xs, med, low, high = _band(group)
        label = f"{sampler} (median of {len(group)})"
        ax.fill_between(xs, low, high, color=colour, alpha=0.2, step="post", linewidth=0)
        ax.step(xs, med, where="post", color=colour, label=label)
        web.add_trace(
            go.Scatter(
                x=xs,
                y=high,
                mode="lines",
                line={"width": 0, "shape": "hv"},
                legendgroup=sampler,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        web.add_trace(
            go.Scatter(
                x=xs,
                y=low,
                mode="lines",
                fill="tonexty",
                opacity=0.2,
                line={"width": 0, "shape": "hv", "color": colour},
                legendgroup=sampler,
                name=f"{sampler} min–max",
            )
        )
        web.add_trace(
            go.Scatter(
                x=xs,
                y=med,
                mode="lines",
                legendgroup=sampler,
                name=label,
                line={"color": colour, "shape": "hv"},
            )
        )
    title = "Best validation age accuracy so far (COMPLETE trials), median and min–max band"
    ax.set(xlabel="trial", ylabel="best val age accuracy (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(folder / "convergence.png", bbox_inches="tight")
    web.update_layout(title=title, xaxis_title="trial", yaxis_title="best val age accuracy (%)")
    web.write_html(folder / "convergence.html", include_plotlyjs="cdn")


def plot_pruning(all_stats: Sequence[StudyStats], folder: Path) -> None:
    """``pruning.png`` and ``.html``: every trial's val age accuracy per epoch, one panel
    per sampler, coloured by sampler; solid COMPLETE, dotted with an x where PRUNED."""
    import plotly.graph_objects as go
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from plotly.subplots import make_subplots

    groups = by_sampler(all_stats)
    fig = Figure(figsize=(4.5 * len(groups), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    web = make_subplots(rows=1, cols=len(groups), shared_yaxes=True, subplot_titles=list(groups))
    for col, (colour, (sampler, group)) in enumerate(
        zip(COLOURS * 4, groups.items(), strict=False)
    ):
        ax = axes[col]
        for stats in group:
            for trial in stats.trials:
                steps = sorted(trial.intermediate_values.items())
                if not steps:
                    continue
                xs, ys = [e for e, _ in steps], [100 * v for _, v in steps]
                pruned = trial.state == TrialState.PRUNED
                style = (
                    {"linestyle": ":", "linewidth": 0.8, "alpha": 0.6}
                    if pruned
                    else {"linestyle": "-", "linewidth": 1.2, "alpha": 0.9}
                )
                ax.plot(xs, ys, color=colour, **style)
                if pruned:
                    ax.plot(xs[-1:], ys[-1:], marker="x", color=colour, linestyle="none")
                web.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines+markers" if pruned else "lines",
                        name=f"{stats.study_name} #{trial.number} {trial.state.name}",
                        legendgroup=sampler,
                        showlegend=False,
                        line={"color": colour, "dash": "dot" if pruned else "solid"},
                        marker={"symbol": "x", "size": [0] * (len(xs) - 1) + [7]},
                    ),
                    row=1,
                    col=col + 1,
                )
        n_pruned = sum(s.pruned for s in group)
        n_complete = sum(s.complete for s in group)
        ax.set_title(f"{sampler}: {n_complete} complete, {n_pruned} pruned", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val age accuracy (%)")
    fig.suptitle("Intermediate values: solid = COMPLETE, dotted with x = PRUNED", fontsize=11)
    fig.savefig(folder / "pruning.png", bbox_inches="tight")
    web.update_layout(title="Intermediate values per trial: solid COMPLETE, dotted+x PRUNED")
    web.update_yaxes(title_text="val age accuracy (%)", row=1, col=1)
    web.write_html(folder / "pruning.html", include_plotlyjs="cdn")
