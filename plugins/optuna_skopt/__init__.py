"""An Optuna sampler backed by scikit-optimize."""

from optuna_skopt._sampler import SkoptSampler

__all__ = ["SkoptSampler"]
