"""The study's budget: n_trials counts every trial the storage holds, across workers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from agehpo.cli import format_summary
from agehpo.config import StudyConfig
from agehpo.data import PreparedData
from agehpo.study import run_study


def _config(tmp_path: Path, **overrides: object) -> StudyConfig:
    base = {
        "n_trials": 3,
        "n_epochs": 1,
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "sampler": "random",
        "pruner": "none",
        "device": "cpu",
    }
    return StudyConfig(**{**base, **overrides})  # type: ignore[arg-type]


def test_budget_is_the_total_rerun_runs_nothing_raising_continues(
    tmp_path: Path, tiny_data: PreparedData
) -> None:
    lines: list[str] = []
    first = run_study(_config(tmp_path), data=tiny_data, out=lines.append)
    assert len(first.ran) == 3 and first.counts["COMPLETE"] == 3
    assert first.test is not None and first.test_source == "kept"

    again = run_study(_config(tmp_path), data=tiny_data, out=lines.append)
    assert again.ran == []
    assert any("budget is met" in line for line in lines)

    more = run_study(_config(tmp_path, n_trials=5), data=tiny_data, out=lines.append)
    assert more.ran == [3, 4]
    assert len(more.study.trials) == 5


def test_threads_share_the_budget_exactly(tmp_path: Path, tiny_data: PreparedData) -> None:
    result = run_study(
        _config(tmp_path, n_trials=5, n_jobs=3, storage=str(tmp_path / "study.journal")),
        data=tiny_data,
        out=lambda _: None,
    )
    assert sorted(t.number for t in result.study.trials) == [0, 1, 2, 3, 4]
    assert sorted(result.ran) == [0, 1, 2, 3, 4]


def test_summary_lists_counts_best_params_sorted_and_test_accuracy(
    tmp_path: Path, tiny_data: PreparedData
) -> None:
    config = _config(tmp_path, n_trials=2)
    result = run_study(config, data=tiny_data, out=lambda _: None)
    summary = format_summary(result, config)
    best = result.study.best_trial
    assert "Number of finished trials: 2" in summary
    assert f"Validation age accuracy: {100 * best.value:.2f} %" in summary
    param_lines = [line.strip() for line in summary.splitlines() if line.startswith("    ")]
    assert param_lines == [f"{k}: {v}" for k, v in sorted(best.params.items())]
    assert "Test age accuracy (its kept weights)" in summary


def test_another_workers_best_is_retrained_for_the_test_score(
    tmp_path: Path, tiny_data: PreparedData
) -> None:
    config = _config(tmp_path, n_trials=1)
    run_study(config, data=tiny_data, out=lambda _: None)
    # A second process raising the budget never saw trial 0's weights: it would retrain it.
    study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    study.tell(study.ask(), 0.0)
    result = run_study(replace(config, n_trials=2), data=tiny_data, out=lambda _: None)
    assert result.ran == []
    assert result.study.best_trial.number == 0
    assert result.test_source == "retrained"
    assert result.test is not None


@pytest.mark.parametrize("storage", ["nosuchscheme", "postgresql://agehpo@127.0.0.1:1/none"])
def test_unusable_storage_is_one_line(
    tmp_path: Path, storage: str, tiny_data: PreparedData
) -> None:
    from agehpo.hpo.storage import StorageError

    with pytest.raises(StorageError) as error:
        run_study(_config(tmp_path, storage=storage), data=tiny_data, out=lambda _: None)
    assert "\n" not in str(error.value)
    assert "storage=" in str(error.value)
