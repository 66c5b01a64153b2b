"""check_journal: a damaged middle line is named with its repair; a torn last line passes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from agehpo.hpo.journal import check_journal
from agehpo.hpo.storage import open_storage
from agehpo.validation import ConfigError


def _journal(path: Path, n_trials: int = 3) -> list[bytes]:
    """A real journal written by Optuna; returns its lines."""
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    study = optuna.create_study(study_name="s", storage=optuna.storages.JournalStorage(backend))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    return path.read_bytes().splitlines(keepends=True)


def test_a_sound_or_missing_journal_passes(tmp_path: Path) -> None:
    lines = _journal(tmp_path / "a.journal")
    assert check_journal(tmp_path / "a.journal") == len(lines)
    assert check_journal(tmp_path / "missing.journal") == 0
    (tmp_path / "empty.journal").write_bytes(b"")
    assert check_journal(tmp_path / "empty.journal") == 0


def test_a_torn_last_line_passes_and_is_repaired_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "t.journal"
    lines = _journal(path)
    path.write_bytes(b"".join(lines) + b'{"op_code": 5, "worker_id": "ab')  # writer died
    assert check_journal(path) == len(lines)
    storage = open_storage(str(path), heartbeat=False)  # storage.repair_journal cuts it
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda line: line[: len(line) // 2] + b"\n", "not valid JSON"),
        (lambda line: line[:10] + b"\x00" * 14 + line[24:], "not valid JSON"),
        (lambda line: b"\n", "not valid JSON"),
        (lambda line: b"[1, 2]\n", "JSON but not an Optuna operation"),
        (lambda line: b"\xff\xfe\n", "not valid JSON"),
    ],
)
def test_a_damaged_middle_line_is_named_with_the_repair(
    damage: object, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "d.journal"
    lines = _journal(path)
    lines[3] = damage(lines[3])  # type: ignore[operator]
    path.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError) as info:
        check_journal(path)
    message = str(info.value)
    assert "\n" not in message and message.isprintable() and len(message) < 400
    assert f"storage='{path}' line 4 is damaged ({reason}" in message
    assert "head -n 3 FILE > FILE.fixed && mv FILE.fixed FILE" in message


def test_the_repair_the_message_gives_works(tmp_path: Path) -> None:
    path = tmp_path / "r.journal"
    lines = _journal(path, n_trials=4)
    lines[-3] = b"garbage\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError, match=f"line {len(lines) - 2} is damaged"):
        check_journal(path)
    path.write_bytes(b"".join(lines[: len(lines) - 3]))  # head -n <line - 1>
    assert check_journal(path) == len(lines) - 3
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    assert len(optuna.load_study(study_name="s", storage=storage).trials) >= 3


def test_a_bad_complete_last_line_is_refused(tmp_path: Path) -> None:
    # Optuna skips it while it is last, but the next append would bury it in the middle.
    path = tmp_path / "l.journal"
    lines = _journal(path)
    path.write_bytes(b"".join(lines) + b"{oops}\n")
    with pytest.raises(ConfigError, match=f"line {len(lines) + 1} is damaged"):
        check_journal(path)


def test_an_endless_line_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agehpo.hpo import journal

    monkeypatch.setattr(journal, "MAX_ENTRY_BYTES", 1000)
    path = tmp_path / "e.journal"
    lines = _journal(path)
    path.write_bytes(b"".join(lines[:2]) + b"x" * 5000 + b"\n" + b"".join(lines[2:]))
    with pytest.raises(ConfigError, match="line 3 is damaged \\(longer than 1000 bytes"):
        check_journal(path)
