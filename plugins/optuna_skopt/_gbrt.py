"""A GBRT quantile surrogate current scikit-learn accepts; importing it imports skopt."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from skopt.learning import GradientBoostingQuantileRegressor

_STD_QUANTILES = (0.16, 0.5, 0.84)


class QuantileGBRT(GradientBoostingQuantileRegressor):
    """skopt 0.10.2's ``"GBRT"`` (no regressor to scikit-learn 1.6+, calls the removed
    ``np.in1d``) repaired; a subclass, so skopt still optimizes it by sampling."""

    @classmethod
    def default(cls, random_state: int, n_jobs: int = 1) -> QuantileGBRT:
        """The surrogate skopt means by ``base_estimator="GBRT"`` (30 rounds per quantile)."""
        template = GradientBoostingRegressor(n_estimators=30, loss="quantile")
        return cls(base_estimator=template, n_jobs=n_jobs, random_state=random_state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        return tags

    def predict(self, X: Any, return_std: bool = False, return_quantiles: bool = False) -> Any:
        """The median; ``(median, std)``; or every quantile, ``(n_samples, n_quantiles)``."""
        by_quantile = dict(
            zip(self.quantiles, (r.predict(X) for r in self.regressors_), strict=True)
        )
        if return_quantiles:
            return np.column_stack([by_quantile[q] for q in self.quantiles])
        needed = _STD_QUANTILES if return_std else (0.5,)
        if not all(q in by_quantile for q in needed):
            raise ValueError(f"QuantileGBRT needs the quantiles {_STD_QUANTILES} to predict.")
        if not return_std:
            return by_quantile[0.5]
        # The 16th and 84th percentiles lie one standard deviation from a Gaussian median;
        # independently fitted quantiles can cross, and a negative spread would break EI.
        spread = np.maximum(by_quantile[0.84] - by_quantile[0.16], 0.0) / 2.0
        return by_quantile[0.5], spread
