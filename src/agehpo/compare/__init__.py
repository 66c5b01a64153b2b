"""Compare samplers fairly: the same budget, data split and training seeds, repeated runs.

Each (sampler, repeat k) pair is its own study ``{study_name}-{sampler}-r{k}`` whose sampler
seed is ``seed + k - 1``; the data split and the training seeds stay ``seed``, so repeats
differ only in what the sampler proposes. ``n_trials`` is each study's budget, so rerunning
the comparison resumes unfinished studies and skips finished ones.

In MLflow the comparison is one parent run (the MLflow Project run under ``mlflow run``),
with one nested run per study and that study's trial runs nested under it. The parent gets
the table, the verdict and the convergence and pruning plots.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from agehpo.compare import _plots as plots
from agehpo.compare import _report as report
from agehpo.data import PreparedData
from agehpo.hpo.stopping import OrderlyStop
from agehpo.plugins import PluginError, create_sampler
from agehpo.study import StudyConfig, load_data, run_study

DEFAULT_SAMPLERS = "skopt,random,tpe"
DEFAULT_REPEATS = 3
_NOT_IN_ROWS = ("curve", "best_at", "trials")  # lists, not per-study scalars


@dataclass(frozen=True)
class StudyStats:
    """One study's numbers, all over its first ``n_trials`` trials (its budget).

    Attributes:
        curve: Best COMPLETE value among trials ``0..i`` at index ``i`` (None before the
            first COMPLETE trial).
        best_at: Percent of budget -> best COMPLETE value among the trials numbered below
            ``ceil(percent / 100 * n_trials)``.
        wall_time_s: Union of the trials' start-to-end intervals in the storage: sampling
            and training, without pauses between invocations (a resumed study).
    """

    sampler: str
    repeat: int
    study_name: str
    sampler_seed: int
    n_trials: int
    curve: list[float | None]
    best_at: dict[int, float | None]
    complete: int
    pruned: int
    failed: int
    wall_time_s: float
    test_age_accuracy: float | None
    run_id: str | None = None
    test_age_macro_f1: float | None = None
    trials: tuple[FrozenTrial, ...] = field(default=(), repr=False)


@dataclass
class CompareResult:
    """The comparison: per-study stats, the aggregated table and the verdict."""

    stats: list[StudyStats]
    table: pd.DataFrame
    table_markdown: str
    verdict: str
    parent_run_id: str | None = None


def parse_samplers(text: str) -> list[str]:
    """``"skopt, random,tpe"`` -> ``["skopt", "random", "tpe"]``; empty or repeated names
    raise :class:`PluginError` (a one-line user error)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise PluginError(f"samplers={text!r} names no sampler; e.g. 'skopt,random,tpe'")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PluginError(f"samplers={text!r} names {', '.join(repeated)} more than once")
    return names


def study_name_for(base: str, sampler: str, repeat: int) -> str:
    """The study of one (sampler, repeat) pair, repeat counted from 1."""
    return f"{base}-{sampler}-r{repeat}"


def kwargs_for(
    sampler: str, sampler_kwargs: dict[str, Any], samplers: Sequence[str]
) -> dict[str, Any]:
    """Constructor overrides of one sampler.

    ``sampler_kwargs`` keyed by sampler names (``{"skopt": {"base_estimator": "GP"}}``)
    gives each its own; any other object applies to every sampler.
    """
    if sampler_kwargs and all(
        key in samplers and isinstance(value, dict) for key, value in sampler_kwargs.items()
    ):
        return dict(sampler_kwargs.get(sampler, {}))
    return dict(sampler_kwargs)


def best_so_far(trials: Sequence[FrozenTrial], n_trials: int) -> list[float | None]:
    """Best COMPLETE value after each of the first ``n_trials`` trial numbers (maximize)."""
    values: dict[int, float] = {
        t.number: t.value
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and t.number < n_trials
    }
    curve: list[float | None] = []
    best: float | None = None
    for number in range(n_trials):
        if number in values and (best is None or values[number] > best):
            best = values[number]
        curve.append(best)
    return curve


def best_at_percent(trials: Sequence[FrozenTrial], n_trials: int, percent: int) -> float | None:
    """Best COMPLETE value among trials numbered below ``ceil(percent / 100 * n_trials)``;
    pruned trials' intermediate values never count."""
    return best_so_far(trials, n_trials)[report.cutoff(n_trials, percent) - 1]


def wall_time(trials: Sequence[FrozenTrial]) -> float:
    """Seconds covered by the union of the trials' start-to-end intervals."""
    spans = sorted(
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        # Overlapping intervals (n_jobs > 1) are counted once.
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def study_stats(
    study: optuna.Study,
    sampler: str,
    repeat: int,
    sampler_seed: int,
    n_trials: int,
    test_age_accuracy: float | None = None,
    run_id: str | None = None,
    test_age_macro_f1: float | None = None,
) -> StudyStats:
    """The numbers of one study, over its first ``n_trials`` trials."""
    trials = tuple(t for t in study.get_trials(deepcopy=False) if t.number < n_trials)
    curve = best_so_far(trials, n_trials)
    states = [t.state for t in trials]
    return StudyStats(
        sampler=sampler,
        repeat=repeat,
        study_name=study.study_name,
        sampler_seed=sampler_seed,
        n_trials=n_trials,
        curve=curve,
        best_at={p: curve[report.cutoff(n_trials, p) - 1] for p in report.PERCENTS},
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        wall_time_s=wall_time(trials),
        test_age_accuracy=test_age_accuracy,
        run_id=run_id,
        test_age_macro_f1=test_age_macro_f1,
        trials=trials,
    )


def write_report(result: CompareResult, folder: Path) -> None:
    """Write the table (csv, md), per-study rows, verdict and plots into ``folder``."""
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    result.table.to_csv(folder / "compare_table.csv", index=False)
    (folder / "compare_table.md").write_text(result.table_markdown + "\n")
    rows = [
        {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in _NOT_IN_ROWS}
        | report.row_values(s)
        for s in result.stats
    ]
    pd.DataFrame(rows).to_csv(folder / "compare_repeats.csv", index=False)
    (folder / "verdict.txt").write_text(result.verdict + "\n")
    plots.plot_convergence(result.stats, folder / "plots")
    plots.plot_pruning(result.stats, folder / "plots")


def run_compare(
    config: StudyConfig,
    samplers: Sequence[str],
    repeats: int,
    *,
    track: bool = True,
    artifacts_dir: Path | None = None,
    data: PreparedData | None = None,
    out: Callable[[str], None] = print,
    stop: OrderlyStop | None = None,
) -> CompareResult:
    """Run every (sampler, repeat) study to its budget and compare them.

    Args:
        config: The main parameters; ``sampler`` is ignored (``samplers`` replaces it),
            ``sampler_kwargs`` applies to all samplers or per sampler (see :func:`kwargs_for`).
        samplers: Sampler names, e.g. ``["skopt", "random", "tpe"]``.
        repeats: Studies per sampler, with sampler seeds ``seed .. seed + repeats - 1``.
        track: Record in MLflow: a compare parent run (``MLFLOW_RUN_ID`` when set, else a
            run ``compare-{study_name}`` in the experiment named after the study), a nested
            run per study with its trial runs, and the report on the parent. Each study's
            best model is registered as ``{model_name}-{sampler}-r{k}@champion``, so the
            main job's ``{model_name}@champion`` is left alone.
        artifacts_dir: Also keep the report files here.
        data: Preprocessed data shared by every study; loaded once from ``config`` when None.
        out: Where progress lines, the table and the verdict go.
        stop: The process's orderly stop, shared by every study.

    Returns:
        The stats of every study, the table and the verdict.

    Raises:
        PluginError: An unknown sampler or rejected sampler_kwargs (before anything runs).
        ValueError: ``repeats`` below 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    samplers = list(samplers)
    if not samplers or len(set(samplers)) != len(samplers):
        raise PluginError(f"samplers={samplers!r} must be distinct names, at least one")
    for name in samplers:  # fail fast, before hours of trials
        create_sampler(name, kwargs_for(name, config.sampler_kwargs, samplers), seed=config.seed)
    if data is None:
        data = load_data(config)  # once: every study sees the very same split and tensors
    tracker = None
    if track:
        from agehpo.compare._tracking import CompareRun

        tracker = CompareRun(config, samplers, repeats)
    stats: list[StudyStats] = []
    # Repeat-major order: drift in machine load hits every sampler alike, and a stopped
    # comparison leaves whole repeats behind.
    pairs = [(s, k) for k in range(1, repeats + 1) for s in samplers]
    try:
        for index, (sampler, k) in enumerate(pairs, 1):
            name = study_name_for(config.study_name, sampler, k)
            study_config = replace(
                config,
                sampler=sampler,
                sampler_kwargs=kwargs_for(sampler, config.sampler_kwargs, samplers),
                study_name=name,
                model_name=f"{config.model_name}-{sampler}-r{k}",
            )
            seed = config.seed + k - 1
            run_id = tracker.open_study_run(name, sampler, k, seed) if tracker else None
            try:
                done = run_study(
                    study_config,
                    track=track,
                    parent_run_id=run_id,
                    sampler_seed=seed,
                    data=data,
                    out=out,
                    stop=stop,
                )
            except BaseException as error:
                if tracker is not None and run_id is not None:
                    tracker.end(run_id, error)
                raise
            if tracker is not None and run_id is not None:
                tracker.end(run_id, None)
            test = done.test.age_accuracy if done.test is not None else None
            f1 = done.card.heads["age"].macro_f1 if done.card is not None else None
            one = study_stats(done.study, sampler, k, seed, config.n_trials, test, run_id, f1)
            stats.append(one)
            best = one.best_at[100]
            out(
                f"[{index}/{len(pairs)}] {name}: best val "
                f"{'—' if best is None else f'{100 * best:.2f} %'}, {one.complete} complete, "
                f"{one.pruned} pruned, {one.failed} failed, {one.wall_time_s:.0f} s, test "
                f"{'—' if test is None else f'{100 * test:.2f} %'}"
            )
        table = report.build_table(stats)
        result = CompareResult(
            stats, table, report.format_table(table, config.n_trials), report.verdict(table)
        )
        with tempfile.TemporaryDirectory() as tmp:
            write_report(result, Path(tmp))
            if artifacts_dir is not None:
                shutil.copytree(tmp, artifacts_dir, dirs_exist_ok=True)
            if tracker is not None:
                result.parent_run_id = tracker.finish(result, Path(tmp))
    except BaseException as error:
        if tracker is not None:
            tracker.end(tracker.parent_run_id, error, parent=True)
        raise
    out(f"Comparison of {', '.join(samplers)}: {repeats} repeat(s) of {config.n_trials} trials")
    out(result.table_markdown)
    out("Verdict: " + result.verdict)
    if tracker is not None:
        out("\n".join(tracker.ui_hint()))
    return result
