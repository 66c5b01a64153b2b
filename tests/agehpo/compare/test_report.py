"""The table, its markdown and the verdict, for hand-made trials with known numbers."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from agehpo.compare import _report as report
from agehpo.compare._stats import StudyStats, cutoff

MakeStats = Callable[..., StudyStats]


def test_cutoff_is_exact_ceiling_without_float_error() -> None:
    assert cutoff(70, 10) == 7  # math.ceil(0.1 * 70) would say 8
    assert [cutoff(4, p) for p in (10, 25, 50, 100)] == [1, 1, 2, 4]
    assert cutoff(3, 10) == 1


def test_stats_of_hand_made_trials(two_repeats: list[StudyStats]) -> None:
    first, second = two_repeats
    assert first.curve == [None, 0.5, 0.5, 0.7]
    assert first.best_at == {10: None, 25: None, 50: 0.5, 100: 0.7}
    assert second.best_at == {10: 0.6, 25: 0.6, 50: 0.6, 100: 0.65}
    assert (first.complete, first.pruned, first.failed, first.wall_time_s) == (3, 1, 0, 20.0)


def test_table_numbers(two_repeats: list[StudyStats]) -> None:
    table = report.build_table(two_repeats).set_index(["metric", "sampler"])
    expected = {
        "best_val_age_accuracy_at_10pct": (0.6, 0.6, 0.6, 1),
        "best_val_age_accuracy_at_50pct": (0.55, 0.5, 0.6, 2),
        "best_val_age_accuracy": (0.675, 0.65, 0.7, 2),
        "test_age_accuracy": (0.62, 0.61, 0.63, 2),
        "n_trials_complete": (3, 3, 3, 2),
        "n_trials_pruned": (1, 1, 1, 2),
        "wall_time_s": (20.0, 20.0, 20.0, 2),
    }
    for metric, numbers in expected.items():
        row = table.loc[(metric, "a")]
        assert (row["median"], row["min"], row["max"], row["n"]) == pytest.approx(numbers)
    assert table.loc[("test_age_macro_f1", "a"), "n"] == 0
    assert set(table["repeats"]) == {2}


def test_markdown_rows(two_repeats: list[StudyStats]) -> None:
    text = report.format_table(report.build_table(two_repeats), 4)
    lines = text.splitlines()
    assert lines[:2] == ["| measure | a |", "|---|---|"]
    assert (
        "| best val age acc @ 10 % of budget (trials 0–0) | 60.00 (60.00–60.00) "
        "[1 repeat(s) without a value] |"
    ) in lines
    assert "| best val age acc @ 100 % (final) (trials 0–3) | 67.50 (65.00–70.00) |" in lines
    assert "| test age macro-F1 of the best model | — |" in lines
    assert "| trials complete | 3 (3–3) |" in lines
    assert "| wall time per study (s) | 20.0 (20.0–20.0) |" in lines
    assert lines[-1].startswith("Median (min–max) over 2 repeat(s) per sampler")


def test_repeats_table_and_progress_line(two_repeats: list[StudyStats]) -> None:
    rows = report.repeats_table(two_repeats)
    assert list(rows["study_name"]) == ["s-a-r1", "s-a-r2"]
    assert list(rows["best_val_age_accuracy"]) == [0.7, 0.65]
    assert not {"curve", "best_at", "trials"} & set(rows.columns)
    assert report.progress_line(two_repeats[0]) == (
        "s-a-r1: best val 70.00 %, 3 complete, 1 pruned, 0 failed, 20 s, test 61.00 %"
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0.70, 0.72], [0.60, 0.65], "The gap is clear: every a repeat beat every b repeat"),
        ([0.70, 0.60], [0.65, 0.64], "within the spread of repeats (a 60.00–70.00 %"),
        ([0.70], [0.60], "With a single repeat there is no spread"),
    ],
)
def test_verdict_names_the_leader_the_gap_and_whether_it_is_clear(
    make_stats: MakeStats, a: list[float], b: list[float], expected: str
) -> None:
    stats = [make_stats("b", k, [v], test=v) for k, v in enumerate(b, 1)]
    stats += [make_stats("a", k, [v], test=v) for k, v in enumerate(a, 1)]
    text = report.verdict(report.build_table(stats))
    gap = 100 * (pd.Series(a).median() - pd.Series(b).median())
    assert text.startswith("a is ahead: median best validation age accuracy")
    assert f"(+{gap:.2f} percentage points) over {len(a)} repeat(s)." in text
    assert expected in text
    assert "Held-out test age accuracy of the best models (median): b " in text


def test_verdict_ties_rankings_and_samplers_without_a_complete_trial(
    make_stats: MakeStats,
) -> None:
    def verdict(*stats: StudyStats) -> str:
        return report.verdict(report.build_table(stats))

    tie = verdict(make_stats("a", 1, [0.5]), make_stats("b", 1, [0.5]), make_stats("c", 1, [0.4]))
    assert tie.startswith("a and b tie on median best validation age accuracy (50.00 %)")
    assert "Ranking by median: a 50.00 %, b 50.00 %, c 40.00 %." in tie
    assert verdict(make_stats("a", 1, [0.5])) == (
        "Only one sampler (a): nothing to compare; its median best validation age accuracy "
        "is 50.00 %."
    )
    assert verdict(make_stats("a", 1, [0.5]), make_stats("b", 1, [None])) == (
        "a is the only sampler with a COMPLETE trial. No COMPLETE trial for b: ranked last."
    )
    assert verdict(make_stats("a", 1, [None])) == "No sampler completed a trial: no verdict."
