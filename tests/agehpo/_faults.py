"""The fault suite's invariants, checked after every fault: nothing lost, nothing left open.

- no COMPLETE trial lost or changed;
- no trial RUNNING in Optuna's storage;
- no MLflow run RUNNING, in any experiment;
- no trial with two runs (per study uid and trial number);
- the exact budget: once a study is finished, exactly ``n_trials`` trials count;
- the right champion: once a study is finished, ``@champion`` is its best trial's model.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from _mlflow_helpers import all_runs, describe, load_study
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from agehpo.hpo.liveness import budget_used

STUDY = "age-prediction"
Snapshot = dict[int, tuple[str, float | None, dict[str, object]]]


def trials(storage: str) -> list[FrozenTrial]:
    """The study's trials, or none when the study does not exist yet."""
    try:
        return load_study(storage, STUDY).get_trials()
    except (KeyError, ValueError, OSError):
        return []


def snapshot(found: list[FrozenTrial]) -> Snapshot:
    """Number -> (state, value, params) of each trial."""
    return {t.number: (t.state.name, t.value, t.params) for t in found}


def complete(found: list[FrozenTrial]) -> Snapshot:
    """The snapshot of the COMPLETE trials only."""
    return {n: s for n, s in snapshot(found).items() if s[0] == TrialState.COMPLETE.name}


def check_invariants(
    storage: str,
    tracking: str,
    *,
    complete_before: Snapshot,
    n_trials: int,
    finished: bool,
) -> list[FrozenTrial]:
    """Assert the invariants; return the study's trials.

    Args:
        storage: The Optuna storage.
        tracking: The MLflow tracking URI.
        complete_before: COMPLETE trials seen before the fault.
        n_trials: The study's budget.
        finished: Whether the study ran to its end (then the budget is exact).

    Returns:
        The trials.
    """
    found = trials(storage)
    now = snapshot(found)
    assert {n: now.get(n) for n in complete_before} == complete_before, "a COMPLETE trial changed"
    running = [t.number for t in found if t.state == TrialState.RUNNING]
    assert not running, f"trials left RUNNING: {running}\n{now}"
    used = budget_used(found)
    if finished:
        assert used == n_trials, f"{used} trials count, budget {n_trials}: {now}"
        assert not [t for t in found if t.state == TrialState.WAITING], now
    else:
        assert used <= n_trials, f"{used} trials count, budget {n_trials}: {now}"
    runs = all_runs(MlflowClient(tracking))
    open_runs = [r for r in runs if r.info.status == "RUNNING"]
    assert not open_runs, f"MLflow runs left RUNNING: {describe(open_runs)}"
    per_trial = Counter(
        (r.data.tags.get("optuna.study_uid"), r.data.tags["optuna.trial_number"])
        for r in runs
        if "optuna.trial_number" in r.data.tags
    )
    duplicates = [key for key, count in per_trial.items() if count > 1]
    assert not duplicates, f"trials with several runs: {duplicates}\n{describe(runs)}"
    if finished:
        check_champion(storage, tracking)
    return found


def check_champion(storage: str, tracking: str, model_name: str = "age-predictor") -> None:
    """``@champion`` points at a version of this study's best trial."""
    study = load_study(storage, STUDY)
    version = MlflowClient(tracking).get_model_version_by_alias(model_name, "champion")
    assert version.tags.get("optuna.study_uid") == study.user_attrs["optuna_mlflow.study_uid"]
    assert version.tags.get("optuna.trial_number") == str(study.best_trial.number)


def descendants(pid: int) -> list[int]:
    """Pids of every living process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, or '' when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.path.exists(f"/proc/{pid}")
