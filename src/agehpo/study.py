"""One study run: storage, sampler and pruner by name, the shared budget, the summary."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from agehpo.config import StudyConfig
from agehpo.data import PreparedData, load_table, prepare
from agehpo.evaluation import ReportCard, evaluate, format_head

# BestModelKeeper, best_model and test_metrics moved to agehpo.hpo.best; callers still import
# them from here.
from agehpo.hpo.best import BestModelKeeper, best_model, test_metrics, test_predictions
from agehpo.hpo.liveness import budget_used
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import OrderlyStop
from agehpo.hpo.storage import BudgetLock, open_storage
from agehpo.nn.train import EpochMetrics, configure_cpu_threads, resolve_device
from agehpo.objective import Objective, TrainedModel
from agehpo.plugins import create_pruner, create_sampler
from optuna_mlflow import ensure_study_uid

if TYPE_CHECKING:
    from agehpo.tracking.tracker import StudyTracker

_logger = logging.getLogger(__name__)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_study(config: StudyConfig, *, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study, or load it when it exists; safe when workers start at once.

    Args:
        config: The run's parameters.
        sampler_seed: Seed for the sampler; defaults to ``config.seed``.

    Returns:
        The study, maximizing validation age accuracy, with its uid (see
        ``optuna_mlflow.ensure_study_uid``).
    """
    storage = open_storage(config.storage)
    sampler = create_sampler(
        config.sampler,
        config.sampler_kwargs,
        seed=config.seed if sampler_seed is None else sampler_seed,
    )
    pruner = create_pruner(config.pruner)
    study = _create_or_load(config.study_name, storage, sampler, pruner)
    # Under the budget lock, so workers starting together agree on one uid.
    with BudgetLock(config.storage, config.study_name).hold():
        ensure_study_uid(study)
    return study


def _create_or_load(
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
                load_if_exists=True,
            )
        except optuna.exceptions.DuplicatedStudyError:
            # Another worker created it between our lookup and our insert: load theirs.
            time.sleep(0.1 * (attempt + 1))
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def count_trials(study: optuna.Study) -> dict[str, int]:
    """Trials of the study by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    counts = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


def load_data(config: StudyConfig) -> PreparedData:
    """Load, split and preprocess the configured data once, on the configured device."""
    table = load_table(config.data, n_samples=config.n_samples, seed=config.seed)
    prepared = prepare(table, img_size=config.img_size)
    device = resolve_device(config.device)
    configure_cpu_threads(device)
    return PreparedData(
        train=prepared.train.to(device),
        val=prepared.val.to(device),
        test=prepared.test.to(device),
        img_size=prepared.img_size,
        source=prepared.source,
        digest=prepared.digest,
    )


@dataclass
class StudyResult:
    """What one invocation did and what the study now holds."""

    study: optuna.Study
    ran: list[int]
    counts: dict[str, int]
    test: EpochMetrics | None = None
    test_source: str = ""
    card: ReportCard | None = None
    notes: list[str] = field(default_factory=list)


def run_study(
    config: StudyConfig,
    *,
    track: bool = False,
    parent_run_id: str | None = None,
    sampler_seed: int | None = None,
    data: PreparedData | None = None,
    out: Callable[[str], None] = print,
    role: str = "single",
    stop: OrderlyStop | None = None,
) -> StudyResult:
    """Run the study until its budget is met, then score the best configuration on test.

    Args:
        config: The run's parameters.
        track: Track the study in MLflow (parent run, trial runs, plots, best model).
        parent_run_id: MLflow run to nest the trial runs under; None uses the MLflow
            Project run, or starts one named after the study.
        sampler_seed: Seed of the sampler; ``config.seed`` when None (the data and the
            training seeds stay ``config.seed`` either way).
        data: Preprocessed data; loaded from ``config`` when None.
        out: Where progress lines go.
        role: ``single`` runs trials and finishes the study (test score, registry, plots);
            ``worker`` only runs trials; ``launcher`` starts ``config.n_workers`` worker
            processes instead of running trials itself, then finishes the study.
        stop: The process's orderly stop (signals, a dead supervisor); None: an own one
            that nothing requests.

    Returns:
        The study, the trials this call ran and the test metrics of the best trial.

    Raises:
        KeyboardInterrupt: :class:`~agehpo.hpo.stopping.Terminated` or KeyboardInterrupt when
            ``stop`` was requested; running trials were failed and their runs ended.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = stop or OrderlyStop()
    resolve_device(config.device)  # a bad device stops here, before any store is touched
    if track:
        from agehpo.tracking.tracker import check_tracking_server

        check_tracking_server()
    study = open_study(config, sampler_seed=sampler_seed)
    if data is None:
        data = load_data(config)
    objective = Objective(
        data,
        n_epochs=config.n_epochs,
        batch_size=config.batch_size,
        device=data.train.x.device,
        seed=config.seed,
        cuda_graphs=config.device in ("auto", "cuda-graph"),
    )
    keeper = BestModelKeeper(objective)
    runner = TrialRunner(
        study,
        objective,
        n_trials=config.n_trials,
        budget_lock=BudgetLock(config.storage, config.study_name),
        timeout=config.timeout,
        stop=stop,
    )
    # The interrupt check comes first, so that an interrupted trial's last epoch reaches
    # neither Optuna nor MLflow; the keeper comes before tracking, which logs its model.
    objective.epoch_hooks.append(runner.stop_at_epoch_end)
    runner.callbacks.append(keeper)
    tracker = None
    if track:
        from agehpo.tracking.tracker import StudyTracker

        tracker = StudyTracker(config, keeper, parent_run_id=parent_run_id)
        objective.epoch_hooks.append(tracker.epoch_hook)
        runner.callbacks.append(tracker.callback)
    already = budget_used(study.get_trials(deepcopy=False))
    try:
        if tracker is not None:
            tracker.start(study, data, describe=role != "worker")
        with tqdm(
            total=config.n_trials,
            initial=min(already, config.n_trials),
            desc="trials",
            unit="trial",
        ) as progress:
            if role == "launcher":
                from agehpo.hpo.workers import run_workers

                parent = tracker.callback.parent_run_id if tracker is not None else None
                runner.ran = run_workers(
                    config, runner, parent_run_id=parent, progress=progress, stop=stop
                )
            else:
                runner.run(config.n_jobs, progress)
        stop.check()
    except BaseException as error:
        if tracker is not None:
            if role == "launcher":
                # Best effort within the stop's deadline: the next run's reconcile also does it.
                with contextlib.suppress(Exception):
                    _end_dead_workers_runs(tracker, study)
            tracker.close(
                "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED",
                end_parent=stop.supervisor_died,
            )
        raise
    if tracker is not None and role == "launcher":
        _end_dead_workers_runs(tracker, study)
    result = StudyResult(study, runner.ran, count_trials(study))
    used = budget_used(study.get_trials(deepcopy=False))
    if not runner.ran and role != "worker" and used >= config.n_trials:
        out(
            f"Study {config.study_name!r} already holds {used} trials that count (n_trials="
            f"{config.n_trials}): the budget is met, no trial ran. Raise n_trials to continue."
        )
    if role == "worker":
        if tracker is not None:
            tracker.close("FINISHED")
        return result
    found = best_model(study, objective, keeper, tracker.fetch_logged(study) if tracker else None)
    if found is not None:
        result.test = test_metrics(data, found[0])
        result.test_source = found[1]
        result.card = evaluate(test_predictions(data, found[0]))
    if tracker is not None:
        _finish_tracking(tracker, config, result, found[0] if found else None)
    return result


def _finish_tracking(
    tracker: StudyTracker, config: StudyConfig, result: StudyResult, best: TrainedModel | None
) -> None:
    """Log the report card on the parent run, let the tracker register the champion and end
    the runs, then tag the champion version with the card."""
    from agehpo.tracking.report_card import STUDY_UID_ATTR, log_report_card, tag_champion

    study, card = result.study, result.card
    parent = tracker.callback.parent_run_id
    if card is not None and parent is not None:
        log_report_card(tracker.client, parent, card)  # now: finish ends the parent run
    result.notes = tracker.finish(study, best, result.test)
    if card is not None and parent is not None:
        uid = study.user_attrs.get(STUDY_UID_ATTR)
        number = study.best_trial.number
        # The registration's lock: workers finishing together would race on the same tags,
        # and the alias must not move between the lookup and the tagging.
        with BudgetLock(config.storage, f"{config.model_name}/registry").hold():
            tag_champion(tracker.client, config.model_name, uid, number, card, parent)


def _end_dead_workers_runs(tracker: StudyTracker, study: optuna.Study) -> None:
    """A worker killed mid-trial left its trial run RUNNING under this live parent; the run's
    owner tag names a process that is gone, so the reconciler ends it now."""
    tracker.callback.reconcile(study, stale_after=None)


def format_summary(result: StudyResult, config: StudyConfig) -> str:
    """The seed's end-of-study summary; accuracies as percentages."""
    counts = result.counts
    finished = sum(counts[state.name] for state in FINISHED_STATES)
    lines = [
        f"Study {config.study_name!r} (sampler {config.sampler}, pruner {config.pruner})",
        f"  Trials run now: {len(result.ran)}",
        "Study statistics:",
        f"  Number of finished trials: {finished}",
        f"  Number of pruned trials: {counts['PRUNED']}",
        f"  Number of complete trials: {counts['COMPLETE']}",
        f"  Number of failed trials: {counts['FAIL']}",
    ]
    try:
        best = result.study.best_trial
    except ValueError:
        lines.append("No trial completed, so there is no best trial yet.")
        return "\n".join(lines)
    lines += [
        f"Best trial: #{best.number}",
        f"  Validation age accuracy: {100 * (best.value or 0.0):.2f} %",
        "  Params:",
        *(f"    {name}: {value}" for name, value in sorted(best.params.items())),
    ]
    if result.test is not None:
        how = {
            "kept": "its kept weights",
            "logged": "its weights logged by another worker",
            "retrained": "retrained from best_params",
        }[result.test_source]
        lines.append(f"  Test age accuracy ({how}): {100 * result.test.age_accuracy:.2f} %")
    if result.card is not None:
        lines += ["  Per age range on the test split:", *format_head(result.card.heads["age"])]
    return "\n".join([*lines, *result.notes])
