"""Fixtures shared by the SkoptSampler tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import optuna
import pytest


@pytest.fixture
def optuna_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # Optuna's logger does not propagate to the root logger caplog listens on.
    optuna.logging.enable_propagation()
    caplog.set_level(logging.WARNING, logger="optuna")
    yield caplog
    optuna.logging.disable_propagation()
