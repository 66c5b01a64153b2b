"""One study run: ``prepare`` opens the study and wires the objective, runner and observers;
``optimize`` hands the runner to an executor (threads here, or workers on a Dask cluster);
``finalize`` scores the best model on the test split and lets the tracker register it."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import mlflow
import optuna
from optuna.trial import FrozenTrial
from tqdm.auto import tqdm

from agehpo.config import Role, StudyConfig
from agehpo.data import PreparedData
from agehpo.evaluation import ReportCard, evaluate
from agehpo.hpo.best import BestModelKeeper, best_model, test_metrics, test_predictions
from agehpo.hpo.cluster import run_tasks, watch_stop_event, worker_seed
from agehpo.hpo.liveness import budget_used
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import OrderlyStop
from agehpo.hpo.storage import BudgetLock, open_storage
from agehpo.nn.train import EpochMetrics, resolve_device
from agehpo.objective import EpochHook, Objective, load_data
from agehpo.plugins import create_pruner, create_sampler
from agehpo.tracking.report_card import STUDY_UID_ATTR, log_report_card, tag_champion
from agehpo.tracking.tracker import StudyTracker, check_tracking_server
from optuna_mlflow import ensure_study_uid

if TYPE_CHECKING:
    from typing_extensions import Unpack


def open_study(config: StudyConfig, *, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study maximizing validation age accuracy, or load it when it exists (safe
    when workers start at once), with its uid; ``sampler_seed`` None: ``config.seed``."""
    seed = config.seed if sampler_seed is None else sampler_seed
    study = optuna.create_study(
        study_name=config.study_name,
        storage=open_storage(config.storage),
        sampler=create_sampler(config.sampler, config.sampler_kwargs, seed=seed),
        pruner=create_pruner(config.pruner),
        direction="maximize",
        load_if_exists=True,  # a worker that loses the race to create it loads it
    )
    # Under the budget lock, so workers starting together agree on one uid.
    with BudgetLock(config.storage, config.study_name).hold():
        ensure_study_uid(study)
    return study


@dataclass(frozen=True)
class Observer:
    """One party told about the trials: after each epoch, and when a trial ends."""

    name: str
    on_epoch: EpochHook | None = None
    on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None

    def attach(self, objective: Objective, runner: TrialRunner) -> None:
        """Append this observer's hooks to the objective's and the runner's lists."""
        if self.on_epoch is not None:
            objective.epoch_hooks.append(self.on_epoch)
        if self.on_trial_end is not None:
            runner.callbacks.append(self.on_trial_end)


@dataclass
class StudyRun:
    """Everything ``prepare`` wired for one study run."""

    config: StudyConfig
    role: Role
    study: optuna.Study
    data: PreparedData
    objective: Objective
    keeper: BestModelKeeper
    runner: TrialRunner
    tracker: StudyTracker | None
    stop: OrderlyStop


@dataclass
class StudyResult:
    """What one invocation did and what the study now holds (``counts`` by state name)."""

    study: optuna.Study
    ran: list[int]
    counts: dict[str, int]
    test: EpochMetrics | None = None
    test_source: str = ""
    card: ReportCard | None = None
    notes: list[str] = field(default_factory=list)


class StudyOptions(TypedDict, total=False):
    """How one process takes part in a study (see :func:`prepare`)."""

    role: Role | str
    track: bool
    parent_run_id: str | None
    sampler_seed: int | None
    data: PreparedData | None
    stop: OrderlyStop | None


def prepare(
    config: StudyConfig,
    *,
    role: Role | str = Role.SINGLE,
    track: bool = False,
    parent_run_id: str | None = None,
    sampler_seed: int | None = None,
    data: PreparedData | None = None,
    stop: OrderlyStop | None = None,
) -> StudyRun:
    """Open the study and wire the objective, the runner and the observers, in their order.

    The order is the contract: an interrupted trial's last epoch reaches neither Optuna nor
    MLflow; the tracker logs the model the keeper kept.

    Args:
        config: The run's parameters.
        role: What this process does (see :class:`~agehpo.config.Role`).
        track: Track the study in MLflow (parent run, trial runs, plots, best model).
        parent_run_id: The run to nest trial runs under; None: the Project run, or a new one.
        sampler_seed: The sampler's seed; ``config.seed`` when None.
        data: Preprocessed data; loaded from ``config`` when None.
        stop: The process's orderly stop; None: one that nothing requests.

    Returns:
        The wired run: nothing has trained yet.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = stop or OrderlyStop()
    resolve_device(config.device)  # a bad device stops here, before any store is touched
    if track:
        check_tracking_server()
    study = open_study(config, sampler_seed=sampler_seed)
    data = data if data is not None else load_data(config)
    objective = Objective.for_config(config, data)
    keeper = BestModelKeeper(objective)
    lock, budget = BudgetLock(config.storage, config.study_name), config.n_trials
    runner = TrialRunner(
        study, objective, n_trials=budget, budget_lock=lock, timeout=config.timeout, stop=stop
    )
    tracker = StudyTracker(config, keeper, parent_run_id=parent_run_id) if track else None
    observers = [
        Observer("interrupt check", on_epoch=runner.stop_at_epoch_end),
        Observer("best-model keeper", on_trial_end=keeper),
        *([Observer("MLflow", tracker.epoch_hook, tracker.callback)] if tracker else []),
    ]
    for observer in observers:
        observer.attach(objective, runner)
    return StudyRun(config, Role(role), study, data, objective, keeper, runner, tracker, stop)


def in_process(run: StudyRun, progress: tqdm) -> list[int]:
    """The executor of one process: ``n_jobs`` threads claim trials until the budget is met."""
    return run.runner.run(run.config.n_jobs, progress)


def worker_task(
    config: StudyConfig, parent: str | None, tracking_uri: str, stop_event: str
) -> list[int]:
    """One Dask worker's share of the study, its trial runs nested under run ``parent``; the
    client's ``stop_event`` ends its running trials FAIL, to be retried. The trials it ran."""
    mlflow.set_tracking_uri(tracking_uri)
    stop = OrderlyStop()
    watching = watch_stop_event(stop_event, stop)
    try:
        seed = worker_seed(config.seed)
        return run_study(
            config, role=Role.WORKER, track=True, parent_run_id=parent, sampler_seed=seed, stop=stop
        ).ran
    except KeyboardInterrupt:  # the stop: the trials it ended are retried by the next run
        return []
    finally:
        watching.set()
        stop.done()


def cluster_workers(run: StudyRun, progress: tqdm) -> list[int]:
    """The executor of ``n_workers`` tasks on a Dask cluster (:mod:`agehpo.hpo.cluster`),
    nested under the parent run; a dead worker's trial is retried and its run ended."""
    tracker = run.tracker
    parent = tracker.callback.parent_run_id if tracker is not None else None
    uri = tracker.tracking_uri if tracker is not None else mlflow.get_tracking_uri()
    try:
        return run_tasks(
            run.config,
            run.runner,
            worker_task,
            parent_run_id=parent,
            tracking_uri=uri,
            stop=run.stop,
            progress=progress,
        )
    finally:
        if tracker is not None:
            # A killed worker's trial run is left RUNNING: end it now (best effort on a stop).
            with contextlib.suppress(Exception):
                tracker.callback.reconcile(run.study, stale_after=None)


EXECUTORS: dict[Role, Callable[[StudyRun, tqdm], list[int]]] = {
    Role.SINGLE: in_process,
    Role.WORKER: in_process,
    Role.LAUNCHER: cluster_workers,
}


def optimize(run: StudyRun) -> None:
    """Run trials until the budget is met with the role's executor (:data:`EXECUTORS`); on an
    error or a stop the runs this process opened are ended (KILLED or FAILED)."""
    config, tracker = run.config, run.tracker
    already = budget_used(run.study.get_trials(deepcopy=False))
    try:
        if tracker is not None:
            tracker.start(run.study, run.data, describe=run.role is not Role.WORKER)
        bar = tqdm(total=config.n_trials, initial=min(already, config.n_trials), unit="trial")
        with bar as progress:
            run.runner.ran = EXECUTORS[run.role](run, progress)
        run.stop.check()
    except BaseException as error:
        if tracker is not None:
            killed = isinstance(error, KeyboardInterrupt)
            tracker.close("KILLED" if killed else "FAILED", end_parent=run.stop.supervisor_died)
        raise


def finalize(
    run: StudyRun, out: Callable[[str], None] = print, *, register: bool = True
) -> StudyResult:
    """Score the best model on the test split, register it unless not ``register``, end the
    runs; returns the study, the trials this call ran and the best trial's test metrics."""
    config, study, tracker = run.config, run.study, run.tracker
    trials = study.get_trials(deepcopy=False)
    result = StudyResult(study, run.runner.ran, Counter(t.state.name for t in trials))
    used = budget_used(trials)
    if not run.runner.ran and run.role is not Role.WORKER and used >= config.n_trials:
        out(
            f"Study {config.study_name!r} already holds {used} trials that count (n_trials="
            f"{config.n_trials}): the budget is met, no trial ran. Raise n_trials to continue."
        )
    if run.role is Role.WORKER:
        if tracker is not None:
            tracker.close("FINISHED")
        return result
    fetch = tracker.fetch_logged(study) if tracker else None
    found = best_model(study, run.objective, run.keeper, fetch)
    if found is not None:
        result.test, result.test_source = test_metrics(run.data, found[0]), found[1]
        result.card = evaluate(test_predictions(run.data, found[0]))
    if tracker is None:
        return result
    parent, card = tracker.callback.parent_run_id, result.card
    if card is not None and parent is not None:
        log_report_card(tracker.client, parent, card)  # now: finish ends the parent run
    best = found[0] if found else None
    result.notes = tracker.finish(study, best, result.test, register=register)
    if register and card is not None and parent is not None:
        # The registration's lock: workers finishing together would race on the same tags,
        # and the alias must not move between the lookup and the tagging.
        with BudgetLock(config.storage, f"{config.model_name}/registry").hold():
            uid = study.user_attrs.get(STUDY_UID_ATTR)
            tag_champion(
                tracker.client, config.model_name, uid, study.best_trial.number, card, parent
            )
    return result


def run_study(
    config: StudyConfig,
    *,
    out: Callable[[str], None] = print,
    register: bool = True,
    **options: Unpack[StudyOptions],
) -> StudyResult:
    """Run the study until its budget is met, then score the best configuration on test.

    Args:
        config: The run's parameters.
        out: Where progress lines go.
        register: Register the best model as ``config.model_name``'s champion.
        **options: How this process takes part, as :func:`prepare` takes them.

    Returns:
        The study, the trials this call ran and the test metrics of the best trial.

    Raises:
        KeyboardInterrupt: When the stop was requested; running trials ended FAIL, runs ended.
    """
    run = prepare(config, **options)
    optimize(run)
    return finalize(run, out, register=register)
