"""The table and the verdict; accuracies are fractions in the CSV, percentages in text."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from agehpo.compare._stats import PERCENTS, StudyStats, by_sampler, cutoff

# (key, label, is an accuracy, source: a percent of budget or a StudyStats field), in order.
# Keys name the CSV rows and the MLflow metrics ``{sampler}_{key}_{median|min|max}``.
ROWS: tuple[tuple[str, str, bool, int | str], ...] = (
    *(
        (f"best_val_age_accuracy_at_{p}pct", f"best val age acc @ {p} % of budget", True, p)
        for p in PERCENTS[:-1]
    ),
    ("best_val_age_accuracy", "best val age acc @ 100 % (final)", True, 100),
    ("test_age_accuracy", "test age acc of the best model", True, "test_age_accuracy"),
    ("test_age_macro_f1", "test age macro-F1 of the best model", True, "test_age_macro_f1"),
    ("n_trials_complete", "trials complete", False, "complete"),
    ("n_trials_pruned", "trials pruned", False, "pruned"),
    ("n_trials_failed", "trials failed", False, "failed"),
    ("wall_time_s", "wall time per study (s)", False, "wall_time_s"),
)
STATS = ("median", "min", "max")
_NOT_IN_ROWS = ("curve", "best_at", "trials")
BEST = "best validation age accuracy"
NOTE = (
    "Median (min–max) over {} repeat(s) per sampler; accuracies and macro-F1 (the mean of the "
    "five age ranges' F1, so always guessing 20-39 scores low) in %. A best value counts "
    "COMPLETE trials only: a pruned trial's last reported accuracy is not a best value. Wall "
    "time: the union of the trials' run intervals in Optuna's storage."
)


def row_values(stats: StudyStats) -> dict[str, float | None]:
    """One study's value of every table row (None: no COMPLETE trial yet at that point)."""
    return {
        key: stats.best_at[src] if isinstance(src, int) else getattr(stats, src)
        for key, _, _, src in ROWS
    }


def repeats_table(all_stats: Sequence[StudyStats]) -> pd.DataFrame:
    """One row per study: its scalar fields and its value of every table row."""
    return pd.DataFrame(
        {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in _NOT_IN_ROWS}
        | row_values(s)
        for s in all_stats
    )


def build_table(all_stats: Sequence[StudyStats]) -> pd.DataFrame:
    """One row per (metric, sampler): median, min, max and ``n`` over the repeats with a value."""
    records = []
    for sampler, group in by_sampler(all_stats).items():
        per_repeat = [row_values(s) for s in group]
        for key, *_ in ROWS:
            present = pd.Series([v[key] for v in per_repeat if v[key] is not None], dtype=float)
            stat = {s: getattr(present, s)() if len(present) else math.nan for s in STATS}
            count = {"n": len(present), "repeats": len(group)}
            records.append({"metric": key, "sampler": sampler, **stat, **count})
    return pd.DataFrame.from_records(records)


def _cell(row: pd.Series, accuracy: bool) -> str:
    if row["n"] == 0:
        return "—"
    scale, digits = (100.0, 2) if accuracy else (1.0, 1 if row["metric"] == "wall_time_s" else 0)
    med, low, high = (scale * row[c] for c in ("median", "min", "max"))
    text = f"{med:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"
    missing = row["repeats"] - row["n"]
    return text + (f" [{missing} repeat(s) without a value]" if missing else "")


def format_table(table: pd.DataFrame, n_trials: int) -> str:
    """Markdown: a row per measure, a column per sampler, cells "median (min–max)"."""
    samplers = list(dict.fromkeys(table["sampler"]))
    lines = ["| measure | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
    for key, label, accuracy, src in ROWS:
        if isinstance(src, int):
            label += f" (trials 0–{cutoff(n_trials, src) - 1})"
        rows = table[table.metric == key].set_index("sampler")
        cells = " | ".join(_cell(rows.loc[s], accuracy) for s in samplers)
        lines.append(f"| {label} | {cells} |")
    repeats = int(table["repeats"].max()) if len(table) else 0
    return "\n".join([*lines, "", NOTE.format(repeats)])


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def progress_line(stats: StudyStats) -> str:
    """One line on a finished study: best, counts, wall time, test accuracy."""
    return (
        f"{stats.study_name}: best val {_pct(stats.best_at[100])}, {stats.complete} complete, "
        f"{stats.pruned} pruned, {stats.failed} failed, {stats.wall_time_s:.0f} s, test "
        f"{_pct(stats.test_age_accuracy)}"
    )


def _medians(rows: pd.DataFrame) -> str:
    return ", ".join(f"{sampler} {_pct(row['median'])}" for sampler, row in rows.iterrows())


def _judge(lead: str, a: pd.Series, second: str, b: pd.Series, repeats: int) -> str:
    """Whether the leader's gap to the runner-up exceeds the spread of repeats."""
    spread = ", ".join(
        f"{s} {100 * r['min']:.2f}–{100 * r['max']:.2f} %" for s, r in ((lead, a), (second, b))
    )
    if repeats < 2:
        return "With a single repeat there is no spread to judge the gap against."
    if a["min"] > b["max"]:
        return f"The gap is clear: every {lead} repeat beat every {second} repeat ({spread})."
    return f"The gap is within the spread of repeats ({spread}): not a clear win at this budget."


def verdict(table: pd.DataFrame) -> str:
    """Who leads by median final best, by how much, and whether the gap beats the spread."""
    final = table[table.metric == "best_val_age_accuracy"].set_index("sampler")
    ranked = final[final.n > 0].sort_values("median", ascending=False, kind="stable")
    missing = [str(s) for s in final.index if s not in ranked.index]
    tail = [f"No COMPLETE trial for {', '.join(missing)}: ranked last."] if missing else []
    if ranked.empty:
        return "No sampler completed a trial: no verdict."
    (lead, a), *others = ranked.iterrows()
    if not others and missing:
        return " ".join([f"{lead} is the only sampler with a COMPLETE trial.", *tail])
    if not others:
        only = f"Only one sampler ({lead}): nothing to compare"
        return f"{only}; its median {BEST} is {_pct(a['median'])}."
    (second, b), repeats = others[0], int(final["repeats"].max())
    gap, over = 100 * (a["median"] - b["median"]), f"over {repeats} repeat(s)."
    if abs(gap) < 1e-9:
        tied = [str(s) for s, r in ranked.iterrows() if abs(r["median"] - a["median"]) < 1e-12]
        names = " and ".join([", ".join(tied[:-1]), tied[-1]])
        lines = [f"{names} tie on median {BEST} ({_pct(a['median'])}) {over}"]
    else:
        lines = [
            f"{lead} is ahead: median {BEST} {_pct(a['median'])} vs {_pct(b['median'])} for "
            f"{second} (+{gap:.2f} percentage points) {over}",
            _judge(lead, a, second, b, repeats),
        ]
    if len(ranked) > 2:
        lines.append(f"Ranking by median: {_medians(ranked)}.")
    test = table[(table.metric == "test_age_accuracy") & (table.n > 0)].set_index("sampler")
    if len(test):
        lines.append(f"Held-out test age accuracy of the best models (median): {_medians(test)}.")
    return " ".join(lines + tail)
