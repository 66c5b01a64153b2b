"""agehpo: tune a PyTorch age-range classifier with Optuna, track it in MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
