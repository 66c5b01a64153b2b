"""The only place that touches private Optuna names; each has a test in test_compat."""

from __future__ import annotations

from optuna.study import Study
from optuna.trial import FrozenTrial


def study_key(study: Study) -> tuple[int, int, str, int | None]:
    """What tells apart the studies, and Hyperband's per-bracket views, a sampler serves."""
    return (
        # Every InMemoryStorage numbers its studies from 0, and Study has no public storage.
        id(study._storage),
        # Study has no public id; its name may be reused after a deletion.
        study._study_id,
        study.study_name,
        # Hyperband hands samplers a per-bracket view of the study, whose trials differ.
        getattr(study, "_bracket_id", None),
    )


def cached_trials(study: Study) -> list[FrozenTrial]:
    """The study's trials from the cache Optuna keeps while a trial is being sampled."""
    # Public get_trials always reads the storage; only _get_trials takes the cache.
    return study._get_trials(deepcopy=False, use_cache=True)
