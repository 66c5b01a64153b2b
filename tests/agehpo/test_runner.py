"""TrialRunner with threads: a broken trial ends the run without spending the budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from agehpo.runner import TrialRunner
from agehpo.storage import BudgetLock

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("broken_thread", ["trial_0", "trial_1"])
def test_a_broken_trial_stops_the_other_threads_claiming(
    broken_thread: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    broke = threading.Event()

    def objective(trial: optuna.Trial) -> float:
        if threading.current_thread().name == broken_thread and not broke.is_set():
            broke.set()
            raise RuntimeError("a bug in the objective")
        time.sleep(0.2)
        return 1.0

    runner = TrialRunner(study, objective, n_trials=40, budget_lock=BudgetLock(url, "s"))
    with pytest.raises(RuntimeError, match="a bug in the objective"):
        runner.run(n_jobs=2)
    states = [t.state for t in study.get_trials()]
    # The healthy thread finished the trial it was running (at most one more started while
    # the error travelled), and claimed no more: 40 trials would have taken 4 s.
    assert states.count(TrialState.FAIL) == 1
    assert len(states) <= 4, states
    assert all(state.is_finished() for state in states)
