"""Each private Optuna name optuna_skopt uses (all in _compat) still works upstream."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.pruners import HyperbandPruner
from optuna.storages.journal import JournalFileBackend, JournalStorage

from optuna_skopt import _compat

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_study_key_tells_apart_storages_studies_and_brackets(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    a = optuna.create_study(study_name="a", storage=storage)
    b = optuna.create_study(study_name="b", storage=storage)
    key = _compat.study_key(a)
    assert key == (id(storage), storage.get_study_id_from_name("a"), "a", None)
    assert key == _compat.study_key(optuna.load_study(study_name="a", storage=storage))
    assert key != _compat.study_key(b)
    # Two in-memory studies share id and name; only their storage object tells them apart.
    assert _compat.study_key(optuna.create_study()) != _compat.study_key(optuna.create_study())

    brackets = set()

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
            brackets.add(_compat.study_key(study)[3])
            return super().sample_independent(study, trial, name, distribution)

    pruner = HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    study = optuna.create_study(sampler=Spy(seed=0), pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 1)
        trial.should_prune()
        return x

    study.optimize(objective, n_trials=12)
    assert brackets and None not in brackets  # every sample saw a bracket's view


def test_cached_trials_are_the_trials_of_the_study() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    cached = _compat.cached_trials(study)
    assert [t.number for t in cached] == [t.number for t in study.get_trials()]
    seen: list[int] = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
            seen.append(len(_compat.cached_trials(study)))
            return super().sample_independent(study, trial, name, distribution)

    study.sampler = Spy(seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert seen == [4, 5]  # the running trial included
