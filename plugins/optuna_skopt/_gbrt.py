"""A gradient-boosted quantile surrogate that current scikit-learn accepts as a regressor.

Imported only when a GBRT surrogate is requested, because importing it imports skopt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from skopt.learning import GradientBoostingQuantileRegressor

_STD_QUANTILES = (0.16, 0.5, 0.84)


class QuantileGBRT(GradientBoostingQuantileRegressor):
    """skopt's ``"GBRT"`` surrogate, repaired for scikit-learn 1.6+ and numpy 2.4.

    scikit-optimize 0.10.2's ``GradientBoostingQuantileRegressor`` lists ``BaseEstimator``
    before ``RegressorMixin``, so scikit-learn's estimator tags no longer mark it as a
    regressor and ``skopt.Optimizer`` refuses it; its ``predict`` also calls ``np.in1d``,
    which numpy 2.4 removed. Subclassing (rather than wrapping) keeps skopt recognising it as
    a tree model, so it is still optimized by sampling instead of L-BFGS, which would ask it
    for gradients it cannot give. The constructor arguments are those of the parent.
    """

    @classmethod
    def default(cls, random_state: int, n_jobs: int = 1) -> QuantileGBRT:
        """Build the surrogate skopt means by ``base_estimator="GBRT"``.

        Args:
            random_state: Seed for the boosted trees.
            n_jobs: Number of quantiles fitted in parallel.

        Returns:
            An unfitted estimator with 30 boosting rounds per quantile, as in skopt.
        """
        template = GradientBoostingRegressor(n_estimators=30, loss="quantile")
        return cls(base_estimator=template, n_jobs=n_jobs, random_state=random_state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        return tags

    def predict(self, X: Any, return_std: bool = False, return_quantiles: bool = False) -> Any:
        """Predict the median, and optionally a spread or every quantile.

        Args:
            X: Inputs, shape ``(n_samples, n_features)``.
            return_std: Whether to also return a standard-deviation estimate.
            return_quantiles: Whether to return the prediction of every quantile instead.

        Returns:
            The median prediction; a ``(median, std)`` tuple when ``return_std`` is true; or an
            array of shape ``(n_samples, n_quantiles)`` when ``return_quantiles`` is true.
        """
        by_quantile = dict(
            zip(self.quantiles, (r.predict(X) for r in self.regressors_), strict=True)
        )
        if return_quantiles:
            return np.column_stack([by_quantile[q] for q in self.quantiles])
        if 0.5 not in by_quantile or (
            return_std and not all(q in by_quantile for q in _STD_QUANTILES)
        ):
            raise ValueError(f"QuantileGBRT needs the quantiles {_STD_QUANTILES} to predict.")
        median = by_quantile[0.5]
        if not return_std:
            return median
        # The 16th and 84th percentiles lie one standard deviation from a Gaussian median.
        # Independently fitted quantiles can cross; a negative spread would break EI and PI.
        spread = np.maximum(by_quantile[0.84] - by_quantile[0.16], 0.0) / 2.0
        return median, spread
