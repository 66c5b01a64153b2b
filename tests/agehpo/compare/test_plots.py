"""The convergence and pruning plots (HTML and PNG) for hand-made trials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agehpo.compare._plots import band, convergence, pruning, write_plots
from agehpo.compare._stats import StudyStats

MakeStats = Callable[..., StudyStats]


def test_band_is_median_min_max_of_best_so_far_over_the_repeats(
    two_repeats: list[StudyStats],
) -> None:
    # Best so far by trial number: repeat 1 [—, .5, .5, .7], repeat 2 [.6, .6, .65, .65].
    stats = band(two_repeats)
    assert list(stats.index) == [1, 2, 3, 4]
    assert list(stats["median"]) == pytest.approx([60, 55, 57.5, 67.5])
    assert list(stats["min"]) == pytest.approx([60, 50, 50, 65])
    assert list(stats["max"]) == pytest.approx([60, 60, 65, 70])


def test_band_starts_at_the_first_complete_trial(make_stats: MakeStats) -> None:
    stats = band([make_stats("a", 1, [None, None, 0.4]), make_stats("a", 2, [None, None, None])])
    assert list(stats.index) == [3] and list(stats["median"]) == pytest.approx([40])


def test_convergence_draws_a_median_line_over_a_min_max_band_per_sampler(
    two_repeats: list[StudyStats], make_stats: MakeStats
) -> None:
    figure = convergence([*two_repeats, make_stats("b", 1, [0.3, 0.2, None, 0.4])])
    traces = {trace.name: trace for trace in figure.data}
    median = traces["a (median of 2)"]
    assert list(median.x) == [1, 2, 3, 4]
    assert list(median.y) == pytest.approx([60, 55, 57.5, 67.5])
    low = traces["a min–max"]
    assert low.fill == "tonexty" and list(low.y) == pytest.approx([60, 50, 50, 65])
    high = [t for t in figure.data if t.legendgroup == "a" and t.showlegend is False]
    assert len(high) == 1 and list(high[0].y) == pytest.approx([60, 60, 65, 70])
    assert list(traces["b (median of 1)"].y) == pytest.approx([30, 30, 30, 40])
    assert median.line.color != traces["b (median of 1)"].line.color


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
    assert list(complete[0].x) == [0, 1] and list(complete[0].y) == pytest.approx([30, 40])


def test_write_plots_writes_each_plot_as_html_and_png(
    two_repeats: list[StudyStats], tmp_path: Path
) -> None:
    write_plots(two_repeats, tmp_path / "plots")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "convergence.html",
        "convergence.png",
        "pruning.html",
        "pruning.png",
    ]
    assert "plotly" in (tmp_path / "plots" / "convergence.html").read_text()
    for name in ("convergence.png", "pruning.png"):
        image = (tmp_path / "plots" / name).read_bytes()
        assert image.startswith(b"\x89PNG") and len(image) > 10_000
