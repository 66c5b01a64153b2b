"""The convergence and pruning plots, drawn once each with plotly, for hand-made trials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agehpo.compare._plots import convergence, pruning, write_plots
from agehpo.compare._stats import StudyStats

MakeStats = Callable[..., StudyStats]


def test_convergence_is_the_mean_best_so_far_with_a_std_band(
    two_repeats: list[StudyStats], make_stats: MakeStats
) -> None:
    figure = convergence([*two_repeats, make_stats("b", 1, [0.3, 0.2, None, 0.4])])
    traces = {trace.name: trace for trace in figure.data if trace.showlegend is not False}
    best = traces["a: Best Value"]
    # Best so far by trial number: repeat 1 [—, .5, .5, .7], repeat 2 [.6, .6, .65, .65].
    assert list(best.x) == [0, 1, 2, 3]
    assert list(best.y) == pytest.approx([0.6, 0.55, 0.575, 0.675])
    band = [t for t in figure.data if t.legendgroup == "a" and t.fill == "tonexty"]
    assert len(band) == 1 and list(band[0].y) == pytest.approx([0.6, 0.5, 0.5, 0.65])  # mean - std
    assert list(traces["b: Best Value"].y) == pytest.approx([0.3, 0.3, 0.4])
    assert traces["a: Best Value"].line.color != traces["b: Best Value"].line.color


def test_pruning_draws_every_trial_in_its_sampler_panel(
    two_repeats: list[StudyStats], make_stats: MakeStats
) -> None:
    figure = pruning([*two_repeats, make_stats("b", 1, [0.3, None])])
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["a: 6 complete, 2 pruned", "b: 1 complete, 1 pruned"]
    assert len(figure.data) == 10  # every trial reported epochs 0 and 1
    pruned = [t for t in figure.data if t.name.endswith("PRUNED")]
    assert {t.name for t in pruned} == {"s-a-r1 #0 PRUNED", "s-a-r2 #1 PRUNED", "s-b-r1 #1 PRUNED"}
    assert all(t.line.dash == "dot" and list(t.marker.size) == [0, 8] for t in pruned)
    complete = [t for t in figure.data if t.name.endswith("COMPLETE")]
    assert all(t.line.dash == "solid" and list(t.marker.size) == [0, 0] for t in complete)
    assert {t.xaxis for t in figure.data if t.name.startswith("s-b")} == {"x2"}
    assert list(complete[0].x) == [0, 1] and list(complete[0].y) == [0.3, 0.4]


def test_write_plots_writes_one_html_per_plot(
    two_repeats: list[StudyStats], tmp_path: Path
) -> None:
    write_plots(two_repeats, tmp_path / "plots")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "convergence.html",
        "pruning.html",
    ]
    assert "plotly" in (tmp_path / "plots" / "convergence.html").read_text()
