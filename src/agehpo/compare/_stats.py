"""The numbers of one compared study, all over its first ``n_trials`` trials (its budget)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

PERCENTS = (10, 25, 50, 100)


@dataclass(frozen=True)
class StudyStats:
    """One study's numbers; ``curve`` to ``wall_time_s`` are derived from ``trials``.

    Attributes:
        curve: Best COMPLETE value among trials ``0..i`` at index ``i``; None before any.
        best_at: Percent of budget to the best COMPLETE value in the first :func:`cutoff`.
        wall_time_s: The union of the trials' run intervals, pauses between runs left out.
    """

    sampler: str
    repeat: int
    study_name: str
    sampler_seed: int
    n_trials: int
    curve: list[float | None] = field(init=False)
    best_at: dict[int, float | None] = field(init=False)
    complete: int = field(init=False)
    pruned: int = field(init=False)
    failed: int = field(init=False)
    wall_time_s: float = field(init=False)
    test_age_accuracy: float | None = None
    run_id: str | None = None
    test_age_macro_f1: float | None = None
    trials: tuple[FrozenTrial, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        trials = tuple(t for t in self.trials if t.number < self.n_trials)
        curve = best_so_far(trials, self.n_trials)
        states = [t.state for t in trials]
        derived = {
            "trials": trials,
            "curve": curve,
            "best_at": {p: curve[cutoff(self.n_trials, p) - 1] for p in PERCENTS},
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
            "wall_time_s": wall_time(trials),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


@dataclass
class CompareResult:
    """The comparison: per-study stats, the aggregated table and the verdict."""

    stats: list[StudyStats]
    table: pd.DataFrame
    table_markdown: str
    verdict: str
    parent_run_id: str | None = None


def cutoff(n_trials: int, percent: int) -> int:
    """``ceil(percent / 100 * n_trials)`` in integers (``math.ceil(0.1 * 70)`` is 8), at least 1."""
    return max(1, -(-percent * n_trials // 100))


def best_so_far(trials: Sequence[FrozenTrial], n_trials: int) -> list[float | None]:
    """Best COMPLETE value (maximize) after each of the first ``n_trials`` trial numbers."""
    done = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    curve: list[float | None] = []
    for value in (done.get(number) for number in range(n_trials)):
        best = curve[-1] if curve else None
        curve.append(best if value is None or (best is not None and best >= value) else value)
    return curve


def wall_time(trials: Sequence[FrozenTrial]) -> float:
    """Seconds covered by the union of the trials' start-to-end intervals."""
    spans = sorted(
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:  # overlaps (n_jobs > 1) count once
        total, end = total + max(0.0, stop - max(start, end)), max(end, stop)
    return total


def by_sampler(all_stats: Sequence[StudyStats]) -> dict[str, list[StudyStats]]:
    """Stats grouped by sampler, samplers in the order given, repeats in order."""
    groups: dict[str, list[StudyStats]] = {}
    for stats in all_stats:
        groups.setdefault(stats.sampler, []).append(stats)
    return {s: sorted(g, key=lambda x: x.repeat) for s, g in groups.items()}
