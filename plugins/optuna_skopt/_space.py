"""The union search space of a study's trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class UnionSpace:
    """Every parameter some trial used, with its distribution, sorted by name.

    Attributes:
        distributions: The parameters whose distribution is the same in every trial using them.
        conflicting: Those whose distribution differs between trials (e.g. a dynamic range):
            no single skopt dimension describes them, so they stay with the independent sampler,
            as Optuna's intersection search space leaves them out too.
    """

    distributions: dict[str, BaseDistribution]
    conflicting: frozenset[str]

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial]) -> UnionSpace:
        """The union over ``trials``."""
        found: dict[str, BaseDistribution] = {}
        conflicting: set[str] = set()
        for trial in trials:
            for name, distribution in trial.distributions.items():
                if found.setdefault(name, distribution) != distribution:
                    conflicting.add(name)
        distributions = {name: found[name] for name in sorted(found) if name not in conflicting}
        return cls(distributions, frozenset(conflicting))
