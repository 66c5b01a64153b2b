"""SkoptSampler: Optuna's sampler interface over one cached ``skopt.Optimizer`` per study."""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import optuna
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import TrialState

from optuna_skopt._compat import cached_trials, study_key
from optuna_skopt._optimizer import Observation, _Optimizer, build_optimizer, import_skopt
from optuna_skopt._space import UnionSpace

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial


# A child of Optuna's logger, so optuna.logging.set_verbosity and Optuna's handler apply to it.
_logger = optuna.logging.get_logger(f"optuna.{__name__}")


@dataclass
class _StudyState:
    """What the sampler remembers about the study it last served."""

    key: tuple[int, int, str, int | None]
    search_space: IntersectionSearchSpace = field(default_factory=IntersectionSearchSpace)
    optimizer: _Optimizer | None = None
    # Union mode: parameters left out because their distribution differs between trials.
    conflicting: frozenset[str] = frozenset()


class SkoptSampler(BaseSampler):
    """Sampler using `scikit-optimize <https://scikit-optimize.github.io/>`__ as the backend.

    A ``skopt.Optimizer`` (cached per study, told only new trials, rebuilt when the space or a
    told trial changes) samples the relative search space jointly, ``independent_sampler`` the
    other parameters. The relative search space is, with ``search_space="intersection"``, the
    parameters every completed trial has (conditional ones are sampled independently), and with
    ``"union"`` every parameter some trial skopt learns from has: each such trial is told, a
    parameter it lacks imputed at its distribution's low end (the parameters that decide
    whether it is active tell skopt it was not). Values proposed for parameters the objective
    then does not suggest are dropped, so a trial's params hold only the ones it used.

    Example:
        ``SkoptSampler(skopt_kwargs={"base_estimator": "ET"}, search_space="union")``

    Args:
        independent_sampler: For the other parameters; default ``RandomSampler(seed=seed)``.
        warn_independent_sampling: Warn, once per study, when a parameter skopt could have
            modelled is sampled independently after startup.
        skopt_kwargs: ``skopt.Optimizer`` arguments but ``dimensions``; random_state beats seed.
        n_startup_trials: Finished trials before relative sampling starts.
        search_space: ``"intersection"`` or ``"union"`` (see above).
        consider_pruned_trials: Tell skopt pruned trials too, scored by their last
            intermediate value.
        seed: Seed for the independent sampler and for skopt.

    Raises:
        ImportError: If scikit-optimize is not installed.
        ValueError: If ``skopt_kwargs`` has an unknown key, ``dimensions``, or a bad value, or
            ``search_space`` is neither ``"intersection"`` nor ``"union"``.
    """

    def __init__(
        self,
        independent_sampler: BaseSampler | None = None,
        warn_independent_sampling: bool = True,
        skopt_kwargs: Mapping[str, Any] | None = None,
        n_startup_trials: int = 1,
        *,
        search_space: Literal["intersection", "union"] = "intersection",
        consider_pruned_trials: bool = False,
        seed: int | None = None,
    ) -> None:
        if search_space not in ("intersection", "union"):
            raise ValueError(
                f"search_space must be 'intersection' or 'union', not {search_space!r}."
            )
        self._union = search_space == "union"
        self._skopt_kwargs = validate_skopt_kwargs(skopt_kwargs)
        random_state = self._skopt_kwargs.pop("random_state", seed)
        # A fresh seed per (re)built optimizer: a rebuild does not replay earlier random points.
        if not isinstance(random_state, np.random.RandomState):
            random_state = np.random.RandomState(random_state)
        self._rng = random_state
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._warn_independent_sampling = warn_independent_sampling
        self._n_startup_trials = n_startup_trials
        self._consider_pruned_trials = consider_pruned_trials
        # Optuna calls samplers from n_jobs threads; the cached state is not thread-safe.
        self._lock = threading.Lock()
        self._state: _StudyState | None = None
        # Studies (bracket views aside) already warned about independent sampling.
        self._warned: set[tuple[int, int, str]] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_state": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reseed_rng(self) -> None:
        with self._lock:
            self._independent_sampler.reseed_rng()
            self._rng = np.random.RandomState()
            self._state = None

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _check_single_objective(study)
        if self._union:
            finished = self._finished_values(study, study.get_trials(deepcopy=False))
            union = UnionSpace.of([t for t, _ in finished])
            search_space = union.distributions
            with self._lock:
                self._state_for(study).conflicting = union.conflicting
        else:
            with self._lock:
                search_space = self._state_for(study).search_space.calculate(study)
        # Trial answers single-valued distributions itself, so skopt never needs them.
        return {name: dist for name, dist in search_space.items() if not dist.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _check_single_objective(study)
        if not search_space:
            return {}
        finished = self._finished_values(study, study.get_trials(deepcopy=False))
        if len(finished) < self._n_startup_trials:
            return {}
        with self._lock:
            state = self._state_for(study)
            optimizer = state.optimizer
            # sync() refuses when a trial it was told has changed: then start afresh.
            if (
                optimizer is None
                or optimizer.search_space != search_space
                or not optimizer.sync(_observations(optimizer, finished))
            ):
                optimizer = _Optimizer(
                    search_space,
                    self._skopt_kwargs,
                    int(self._rng.randint(2**31 - 1)),
                    impute=self._union,
                )
                optimizer.sync(_observations(optimizer, finished))
                state.optimizer = optimizer
            return optimizer.ask()

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _check_single_objective(study)
        if self._warn_independent_sampling and self._first_warning(study, param_name):
            reason, hint = (
                ("its distribution differs between trials", "")
                if self._union
                else ("e.g. conditional", "search_space='union' to model them, or ")
            )
            _logger.warning(
                f"Parameter '{param_name}' of trial {trial.number} is outside SkoptSampler's "
                f"relative search space ({reason}): it and any others like it are "
                f"sampled by {type(self._independent_sampler).__name__}. This warning is shown "
                f"once per study; pass {hint}warn_independent_sampling=False to SkoptSampler."
            )
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    def _first_warning(self, study: Study, param_name: str) -> bool:
        """Whether to warn now that ``param_name`` is sampled independently: once per study,
        after startup, and in union mode only for a parameter skopt leaves out on purpose (one
        no told trial has used is merely new)."""
        key = study_key(study)[:3]  # all of Hyperband's bracket views share one warning
        if key in self._warned:
            return False
        # The per-ask trial cache is enough here: staleness could only shift a warning.
        n_finished = len(self._finished_values(study, cached_trials(study)))
        if n_finished < max(self._n_startup_trials, 1):
            return False
        with self._lock:
            if self._union and param_name not in self._state_for(study).conflicting:
                return False
            if key in self._warned:  # another thread's trial warned meanwhile
                return False
            self._warned.add(key)
        return True

    def _state_for(self, study: Study) -> _StudyState:
        key = study_key(study)
        if self._state is None or self._state.key != key:
            self._state = _StudyState(key)
        return self._state

    def _finished_values(
        self, study: Study, trials: list[FrozenTrial]
    ) -> list[tuple[FrozenTrial, float]]:
        """The trials skopt may learn from, with the value it should minimize."""
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        pruned = TrialState.PRUNED if self._consider_pruned_trials else None
        result = []
        for trial in trials:
            value = trial.value if trial.state == TrialState.COMPLETE else None
            if trial.state == pruned and trial.intermediate_values:
                value = trial.intermediate_values[max(trial.intermediate_values)]
            # skopt's surrogates cannot fit NaN or infinite targets.
            if value is not None and math.isfinite(value):
                result.append((trial, sign * value))
        return result


def _observations(
    optimizer: _Optimizer, finished: list[tuple[FrozenTrial, float]]
) -> dict[int, Observation]:
    observed = {trial.number: optimizer.observe(trial.params, value) for trial, value in finished}
    return {number: obs for number, obs in observed.items() if obs is not None}


def _check_single_objective(study: Study) -> None:
    if len(study.directions) > 1:
        raise ValueError(
            "SkoptSampler supports only single-objective studies, but this study has "
            f"{len(study.directions)} objectives."
        )


def validate_skopt_kwargs(skopt_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``skopt_kwargs``, checked before any trial runs (see ``SkoptSampler``)."""
    skopt = import_skopt()
    kwargs = dict(skopt_kwargs or {})
    if "dimensions" in kwargs:
        raise ValueError(
            "skopt_kwargs must not contain 'dimensions': SkoptSampler derives the dimensions "
            "from the study's search space."
        )
    accepted = sorted(set(inspect.signature(skopt.Optimizer).parameters) - {"dimensions"})
    if unknown := sorted(set(kwargs) - set(accepted)):
        raise ValueError(
            f"Unknown skopt_kwargs key(s) {unknown}; skopt.Optimizer accepts {accepted}."
        )
    # Per-second acquisition functions need evaluation times, which Optuna does not report.
    if kwargs.get("acq_func") in ("EIps", "PIps"):
        raise ValueError(
            f"acq_func={kwargs['acq_func']!r} needs evaluation times alongside objective "
            "values, which SkoptSampler does not provide; use 'EI', 'PI', 'LCB' or 'gp_hedge'."
        )
    # A throwaway build makes bad values fail now, not at the first relative sample.
    build_optimizer(skopt, [skopt.space.Real(0.0, 1.0)], kwargs, random_state=0)
    return kwargs
