"""What ``agehpo compare`` shows: the table and the verdict (the plots: ``_compare_plots``).

Pure functions of the per-study numbers (:class:`agehpo.compare.StudyStats`); nothing here
runs a study or talks to MLflow, so the report can be tested and regenerated on its own.
Accuracies are fractions in the CSV (as in MLflow) and percentages in text (as the summary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from agehpo.compare import StudyStats

PERCENTS = (10, 25, 50, 100)
# (key, label, is an accuracy): the table's rows, in order. Keys name the CSV rows and the
# MLflow metrics ``{sampler}_{key}_{median|min|max}``.
ROWS: tuple[tuple[str, str, bool], ...] = (
    *(
        (f"best_val_age_accuracy_at_{p}pct", f"best val age acc @ {p} % of budget", True)
        for p in PERCENTS[:-1]
    ),
    ("best_val_age_accuracy", "best val age acc @ 100 % (final)", True),
    ("test_age_accuracy", "test age acc of the best model", True),
    ("test_age_macro_f1", "test age macro-F1 of the best model", True),
    ("n_trials_complete", "trials complete", False),
    ("n_trials_pruned", "trials pruned", False),
    ("n_trials_failed", "trials failed", False),
    ("wall_time_s", "wall time per study (s)", False),
)


def cutoff(n_trials: int, percent: int) -> int:
    """How many trials ``percent`` % of the budget is: ``ceil(percent / 100 * n_trials)``.

    Integer arithmetic, because ``math.ceil(0.1 * 70)`` is 8, not 7.
    """
    return max(1, -(-percent * n_trials // 100))


def row_values(stats: StudyStats) -> dict[str, float | None]:
    """One study's value of every table row (None: no COMPLETE trial yet at that point)."""
    values: dict[str, float | None] = {
        key: stats.best_at[p] for (key, _, _), p in zip(ROWS[:4], PERCENTS, strict=True)
    }
    values.update(
        test_age_accuracy=stats.test_age_accuracy,
        test_age_macro_f1=stats.test_age_macro_f1,
        n_trials_complete=stats.complete,
        n_trials_pruned=stats.pruned,
        n_trials_failed=stats.failed,
        wall_time_s=stats.wall_time_s,
    )
    return values


def by_sampler(all_stats: Sequence[StudyStats]) -> dict[str, list[StudyStats]]:
    """Stats grouped by sampler, samplers in the order given, repeats in order."""
    groups: dict[str, list[StudyStats]] = {}
    for stats in all_stats:
        groups.setdefault(stats.sampler, []).append(stats)
    return {s: sorted(g, key=lambda x: x.repeat) for s, g in groups.items()}


def build_table(all_stats: Sequence[StudyStats]) -> pd.DataFrame:
    """Tidy table: one row per (metric, sampler) with median, min, max over repeats.

    ``n`` counts the repeats that have a value (a repeat without any COMPLETE trial by
    that point has no best value and is left out of that row's statistics).
    """
    records = []
    for sampler, group in by_sampler(all_stats).items():
        per_repeat = [row_values(s) for s in group]
        for key, _, _ in ROWS:
            present = pd.Series([v[key] for v in per_repeat if v[key] is not None], dtype=float)
            records.append(
                {
                    "metric": key,
                    "sampler": sampler,
                    "median": present.median() if len(present) else math.nan,
                    "min": present.min() if len(present) else math.nan,
                    "max": present.max() if len(present) else math.nan,
                    "n": len(present),
                    "repeats": len(group),
                }
            )
    return pd.DataFrame.from_records(records)


def _cell(row: pd.Series, accuracy: bool) -> str:
    if row["n"] == 0:
        return "—"
    scale, digits = (100.0, 2) if accuracy else (1.0, 0 if row["metric"] != "wall_time_s" else 1)
    med, low, high = (scale * row[c] for c in ("median", "min", "max"))
    text = f"{med:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"
    if row["n"] < row["repeats"]:
        text += f" [{row['repeats'] - row['n']} repeat(s) without a value]"
    return text


def format_table(table: pd.DataFrame, n_trials: int) -> str:
    """Markdown: a row per measure, a column per sampler, cells "median (min–max)"."""
    samplers = list(dict.fromkeys(table["sampler"]))
    lines = [
        "| measure | " + " | ".join(samplers) + " |",
        "|---|" + "---|" * len(samplers),
    ]
    percents = (*PERCENTS, *([None] * (len(ROWS) - len(PERCENTS))))
    for (key, label, accuracy), percent in zip(ROWS, percents, strict=True):
        if percent is not None:
            label += f" (trials 0–{cutoff(n_trials, percent) - 1})"
        cells = [
            _cell(table[(table.metric == key) & (table.sampler == s)].iloc[0], accuracy)
            for s in samplers
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    repeats = int(table["repeats"].max()) if len(table) else 0
    lines += [
        "",
        f"Median (min–max) over {repeats} repeat(s) per sampler; accuracies and macro-F1 "
        "(the mean of the five age ranges' F1, so always guessing 20-39 scores low) in %. "
        "A best value "
        "counts COMPLETE trials only: a pruned trial's last reported accuracy is not a best "
        "value. Wall time: the union of the trials' run intervals in Optuna's storage.",
    ]
    return "\n".join(lines)


def verdict(table: pd.DataFrame) -> str:
    """A few sentences from the numbers: who leads by median final best, by how much, and
    whether the gap exceeds the spread of repeats (leader's min above runner-up's max)."""
    final = table[table.metric == "best_val_age_accuracy"].set_index("sampler")
    test = table[table.metric == "test_age_accuracy"].set_index("sampler")
    ranked = final[final.n > 0].sort_values("median", ascending=False, kind="stable")
    missing = [s for s in final.index if s not in ranked.index]
    repeats = int(final["repeats"].max()) if len(final) else 0
    tail = [f"No COMPLETE trial for {', '.join(missing)}: ranked last."] if missing else []
    if ranked.empty:
        return "No sampler completed a trial: no verdict."
    lead = ranked.iloc[0]
    if len(ranked) == 1 and not missing:
        return (
            f"Only one sampler ({lead.name}): nothing to compare; its median best validation "
            f"age accuracy is {100 * lead['median']:.2f} %."
        )
    if len(ranked) == 1:
        return f"{lead.name} is the only sampler with a COMPLETE trial. " + " ".join(tail)
    second = ranked.iloc[1]
    gap = 100 * (lead["median"] - second["median"])
    spread = (
        f"{lead.name} {100 * lead['min']:.2f}–{100 * lead['max']:.2f} %, "
        f"{second.name} {100 * second['min']:.2f}–{100 * second['max']:.2f} %"
    )
    if abs(gap) < 1e-9:
        tied = [
            str(name) for name, r in ranked.iterrows() if abs(r["median"] - lead["median"]) < 1e-12
        ]
        lines = [
            f"{' and '.join([', '.join(tied[:-1]), tied[-1]])} tie on median best validation "
            f"age accuracy ({100 * lead['median']:.2f} %) over {repeats} repeat(s)."
        ]
    else:
        lines = [
            f"{lead.name} is ahead: median best validation age accuracy "
            f"{100 * lead['median']:.2f} % vs {100 * second['median']:.2f} % for {second.name} "
            f"(+{gap:.2f} percentage points) over {repeats} repeat(s)."
        ]
        if repeats < 2:
            lines.append("With a single repeat there is no spread to judge the gap against.")
        elif lead["min"] > second["max"]:
            lines.append(
                f"The gap is clear: every {lead.name} repeat beat every {second.name} "
                f"repeat ({spread})."
            )
        else:
            lines.append(
                f"The gap is within the spread of repeats ({spread}): not a clear win "
                "at this budget."
            )
    if len(ranked) > 2:
        lines.append(
            "Ranking by median: "
            + ", ".join(f"{s} {100 * r['median']:.2f} %" for s, r in ranked.iterrows())
            + "."
        )
    tested = test[test.n > 0]
    if len(tested):
        lines.append(
            "Held-out test age accuracy of the best models (median): "
            + ", ".join(f"{s} {100 * r['median']:.2f} %" for s, r in tested.iterrows())
            + "."
        )
    return " ".join([*lines, *tail])
