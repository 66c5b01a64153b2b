"""The two plots, interactive plotly HTML: convergence per sampler and every trial's curve."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import cycle
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from agehpo.compare._stats import StudyStats, by_sampler


def _budget_study(stats: StudyStats) -> optuna.Study:
    """An in-memory study holding the study's finished trials within its budget."""
    study = optuna.create_study(direction="maximize", study_name=stats.study_name)
    study.add_trials([t for t in stats.trials if t.state.is_finished()])
    return study


def convergence(all_stats: Sequence[StudyStats]) -> go.Figure:
    """Optuna's optimization history per sampler: best-so-far mean and ±1 std over repeats."""
    figure, groups = go.Figure(), by_sampler(all_stats)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # pruned trials would warn "infeasible"
    try:
        for colour, (sampler, group) in zip(cycle(qualitative.Plotly), groups.items()):
            history = optuna.visualization.plot_optimization_history(
                [_budget_study(s) for s in group], target_name="val age accuracy", error_bar=True
            )
            band = "rgba({}, {}, {}, 0.2)".format(*hex_to_rgb(colour))
            for trace in history.data:
                name = f"{sampler}: {trace.name}" if trace.name else sampler
                trace.update(name=name, legendgroup=sampler, marker_color=colour, line_color=colour)
                figure.add_trace(trace.update(fillcolor=band) if trace.fill else trace)
    finally:
        optuna.logging.set_verbosity(verbosity)
    title = "Best val age accuracy so far (COMPLETE trials): mean and ±1 std over the repeats"
    return figure.update_layout(title=title, xaxis_title="trial", yaxis_title="val age accuracy")


def pruning(all_stats: Sequence[StudyStats]) -> go.Figure:
    """Every trial's val age accuracy by epoch, a panel per sampler; dotted with x: PRUNED."""
    groups = by_sampler(all_stats)
    titles = [
        f"{s}: {sum(x.complete for x in g)} complete, {sum(x.pruned for x in g)} pruned"
        for s, g in groups.items()
    ]
    figure = make_subplots(cols=len(groups), shared_yaxes=True, subplot_titles=titles)
    for col, (colour, group) in enumerate(zip(cycle(qualitative.Plotly), groups.values()), 1):
        for stats in group:
            for trial in (t for t in stats.trials if t.intermediate_values):
                epochs, values = zip(*sorted(trial.intermediate_values.items()), strict=True)
                pruned = trial.state == TrialState.PRUNED
                figure.add_scatter(
                    x=epochs,
                    y=values,
                    name=f"{stats.study_name} #{trial.number} {trial.state.name}",
                    line={"color": colour, "dash": "dot" if pruned else "solid"},
                    marker={"symbol": "x", "size": [0] * (len(epochs) - 1) + [8 * pruned]},
                    row=1,
                    col=col,
                )
    figure.update_traces(mode="lines+markers", showlegend=False)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text="val age accuracy", col=1)
    return figure.update_layout(title="Intermediate values: solid COMPLETE, dotted with x PRUNED")


def write_plots(all_stats: Sequence[StudyStats], folder: Path) -> None:
    """Write ``convergence.html`` and ``pruning.html`` (plotly.js from its CDN) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in (("convergence", convergence), ("pruning", pruning)):
        draw(all_stats).write_html(folder / f"{name}.html", include_plotlyjs="cdn")
