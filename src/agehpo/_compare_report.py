"""What ``agehpo compare`` shows: the table, the verdict and the two plots.

Pure functions of the per-study numbers (:class:`agehpo.compare.StudyStats`); nothing here
runs a study or talks to MLflow, so the report can be tested and regenerated on its own.
Accuracies are fractions in the CSV (as in MLflow) and percentages in text (as the summary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from optuna.trial import TrialState

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
    ("n_trials_complete", "trials complete", False),
    ("n_trials_pruned", "trials pruned", False),
    ("n_trials_failed", "trials failed", False),
    ("wall_time_s", "wall time per study (s)", False),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


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
    for (key, label, accuracy), percent in zip(ROWS, (*PERCENTS, *([None] * 5)), strict=True):
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
        f"Median (min–max) over {repeats} repeat(s) per sampler; accuracies in %. A best value "
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


# -- plots ----------------------------------------------------------------------------------


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
