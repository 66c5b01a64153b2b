"""Compare samplers fairly: the same budget, data split and training seeds, repeated runs.

Study ``{study_name}-{sampler}-r{k}`` has sampler seed ``seed + k - 1``. In MLflow: a compare
parent run with the report, a run per study nested under it, and its trial runs under that.
No study registers a model unless asked: the comparison is about samplers, not a champion.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from agehpo.compare import _report as report
from agehpo.compare._plots import write_plots
from agehpo.compare._stats import CompareResult, StudyStats
from agehpo.compare._tracking import CompareRun
from agehpo.config import StudyConfig, parse_samplers, sampler_kwargs_for
from agehpo.data import PreparedData
from agehpo.errors import ConfigError
from agehpo.hpo.stopping import OrderlyStop
from agehpo.objective import load_data
from agehpo.plugins import create_sampler
from agehpo.study import run_study
from agehpo.tracking.runs import ui_hint

# Random start-up trials of these samplers with agehpo's settings (Optuna's n_startup_trials,
# skopt's n_initial_points): below them a sampler has not modelled anything yet.
STARTUP_TRIALS = {"tpe": 10, "tpe_multivariate": 10, "skopt": 10, "gp": 10}


def _run_one(
    config: StudyConfig, sampler: str, k: int, tracker: CompareRun | None, **kwargs: Any
) -> StudyStats:
    """Run repeat ``k`` of ``sampler``'s study to its budget; ``kwargs`` go to run_study."""
    seed, suffix = config.seed + k - 1, f"-{sampler}-r{k}"
    name, model_name = config.study_name + suffix, config.model_name + suffix
    config = replace(config, sampler=sampler, study_name=name, model_name=model_name)
    with tracker.study_run(name, sampler, k, seed) if tracker else nullcontext(None) as run_id:
        done = run_study(
            config, track=bool(tracker), parent_run_id=run_id, sampler_seed=seed, **kwargs
        )
    test = done.test.age_accuracy if done.test is not None else None
    f1 = done.card.heads["age"].macro_f1 if done.card is not None else None
    trials = tuple(done.study.get_trials(deepcopy=False))
    return StudyStats(sampler, k, name, seed, config.n_trials, test, run_id, f1, trials)


def _warn_short_budget(n_trials: int, samplers: Sequence[str], out: Callable[[str], None]) -> None:
    """Say so when ``n_trials`` ends within a sampler's random start-up: nothing to compare."""
    startup = {s: n for s, n in STARTUP_TRIALS.items() if s in samplers and n_trials <= n}
    if startup:
        out(
            f"Warning: n_trials={n_trials} is within the random start-up trials of "
            + ", ".join(f"{s} ({n})" for s, n in startup.items())
            + ": they sample at random all along, so the comparison cannot tell them apart; "
            f"use n_trials > {max(startup.values())}"
        )


def _publish(result: CompareResult, artifacts_dir: Path | None, tracker: CompareRun | None) -> None:
    """Write the table (csv, md), a row per study, the verdict and the plots; keep, log them."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result.table.to_csv(folder / "compare_table.csv", index=False)
        (folder / "compare_table.md").write_text(result.table_markdown + "\n")
        report.repeats_table(result.stats).to_csv(folder / "compare_repeats.csv", index=False)
        (folder / "verdict.txt").write_text(result.verdict + "\n")
        write_plots(result.stats, folder / "plots")
        if artifacts_dir is not None:
            shutil.copytree(folder, artifacts_dir, dirs_exist_ok=True)
        if tracker is not None:
            tracker.log_report(result, folder)


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
    register_models: bool = False,
    first_repeat: int = 1,
) -> CompareResult:
    """Run every (sampler, repeat) study to its budget, then report and compare them.

    Args:
        config: The parameters; ``sampler_kwargs`` apply to all samplers or per sampler.
        samplers: Sampler names, e.g. ``["skopt", "random", "tpe"]``.
        repeats: Studies per sampler; repeat ``k`` has sampler seed ``seed + k - 1``.
        track: Record in MLflow.
        artifacts_dir: Also keep the report files here.
        data: The data every study shares; loaded from ``config`` when None.
        out: Where progress lines, the table and the verdict go.
        stop: The process's orderly stop, shared by every study.
        register_models: Register study ``k``'s best model as ``{model_name}-{sampler}-r{k}``.
        first_repeat: The first ``k``; ``repeats=1, first_repeat=3`` runs repeat 3 alone.

    Returns:
        The stats of every study, the table and the verdict.
    """
    if min(repeats, first_repeat) < 1:
        raise ConfigError(f"repeats={repeats} and first_repeat={first_repeat} must be at least 1")
    samplers = parse_samplers(",".join(samplers))
    for name in samplers:  # fail fast, before hours of trials
        create_sampler(
            name, sampler_kwargs_for(name, config.sampler_kwargs, samplers), seed=config.seed
        )
    _warn_short_budget(config.n_trials, samplers, out)
    data = data if data is not None else load_data(config)
    run = {"data": data, "out": out, "stop": stop, "register": register_models}
    numbers = range(first_repeat, first_repeat + repeats)  # drift hits all samplers alike
    pairs = [(k, s) for k in numbers for s in samplers]
    with CompareRun(config, samplers, repeats) if track else nullcontext(None) as tracker:
        stats: list[StudyStats] = []
        for k, sampler in pairs:
            one = replace(
                config, sampler_kwargs=sampler_kwargs_for(sampler, config.sampler_kwargs, samplers)
            )
            stats.append(_run_one(one, sampler, k, tracker, **run))
            out(f"[{len(stats)}/{len(pairs)}] {report.progress_line(stats[-1])}")
        table = report.build_table(stats)
        markdown = report.format_table(table, config.n_trials)
        result = CompareResult(stats, table, markdown, report.verdict(table))
        _publish(result, artifacts_dir, tracker)
    out(f"Comparison of {', '.join(samplers)}: {repeats} repeat(s) of {config.n_trials} trials")
    out(result.table_markdown)
    out("Verdict: " + result.verdict)
    if tracker is not None:
        out("\n".join(ui_hint(tracker.uri, tracker.experiment_id, "the comparison")))
    return result
