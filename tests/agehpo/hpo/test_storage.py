"""Storages by URL, the shared budget lock, torn journals, heartbeats and SQLite locks.

Real stores only: journal files and SQLite in ``tmp_path``, and a fresh database on the
local PostgreSQL server for each PostgreSQL test.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from _pg import fresh_database
from _procs import wait_for
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from agehpo import _compat
from agehpo.cli import main
from agehpo.data import PreparedData
from agehpo.hpo.liveness import HEARTBEAT_ATTR, retry_trial
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.storage import (
    SQLITE_BUSY_TIMEOUT_S,
    BudgetLock,
    HeartbeatJournalStorage,
    StorageError,
    heartbeat_settings,
    open_storage,
)
from agehpo.objective import Objective

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
]
SPACE = {"x": optuna.distributions.FloatDistribution(0, 1)}


@pytest.fixture
def short_heartbeats(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    monkeypatch.setenv("AGEHPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("AGEHPO_HEARTBEAT_GRACE", "2")
    return heartbeat_settings()


# -- one-line errors ------------------------------------------------------------------------


def _assert_one_line_naming_storage(error: StorageError, *, hidden: str | None = None) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert message.startswith("storage="), message
    if hidden is not None:
        assert hidden not in message


def test_unknown_scheme_is_one_line_naming_storage() -> None:
    with pytest.raises(StorageError) as info:
        open_storage("nosuchdb://user@host/db")
    _assert_one_line_naming_storage(info.value)
    assert "nosuchdb://user@host/db" in str(info.value)


def test_a_path_that_is_no_url_is_one_line_with_examples(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(str(tmp_path / "optuna.db"))
    _assert_one_line_naming_storage(info.value)
    assert "sqlite:///" in str(info.value) and ".journal" in str(info.value)
    assert not (tmp_path / "optuna.db").exists()


def test_unreachable_postgres_is_one_line_without_password() -> None:
    url = "postgresql+psycopg2://alice:hunter2@127.0.0.1:1/optuna"
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        open_storage(url)
    _assert_one_line_naming_storage(info.value, hidden="hunter2")
    message = str(info.value)
    assert "alice:***@127.0.0.1:1" in message
    # The database driver's own reason, not a missing-module or schema error.
    assert "connect" in message.split("cannot be opened:", 1)[1].lower(), message
    # Connection refused is not a transient race: no retry loop.
    assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_a_plain_postgresql_url_opens() -> None:
    with fresh_database(driver="postgresql") as url:
        assert url.startswith("postgresql://")
        storage = open_storage(url)
        study = optuna.create_study(storage=storage, study_name="plain")
        study.optimize(_quadratic, n_trials=1)
        with BudgetLock(url, "plain").hold():
            assert len(study.trials) == 1


def test_cli_reports_unreachable_storage_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    code = main(["study", "--storage", "postgresql+psycopg2://alice:hunter2@127.0.0.1:1/optuna"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("agehpo: error: storage=") and "hunter2" not in lines[0]
    assert "connect" in lines[0].lower()
    # Nothing was tracked for a study that never opened.
    assert not (tmp_path / "mlflow.db").exists()


# -- BudgetLock -------------------------------------------------------------------------------


class _OverlapProbe:
    """Counts threads inside a critical section at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.max_inside = 0
        self.entries = 0
        self._guard = threading.Lock()

    def section(self) -> None:
        with self._guard:
            self.inside += 1
            self.entries += 1
            self.max_inside = max(self.max_inside, self.inside)
        for _ in range(20):
            time.sleep(0)  # only yields the GIL to the other threads
        with self._guard:
            self.inside -= 1


def _hammer(locks: list[BudgetLock], rounds: int) -> _OverlapProbe:
    probe = _OverlapProbe()
    barrier = threading.Barrier(len(locks))
    errors: list[BaseException] = []

    def work(lock: BudgetLock) -> None:
        try:
            barrier.wait(10)
            for _ in range(rounds):
                with lock.hold():
                    probe.section()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck in the lock"
    assert not errors, errors
    assert probe.entries == len(locks) * rounds
    return probe


def test_overlap_probe_sees_unlocked_sections() -> None:
    # The probe used below is able to fail: without a shared lock, sections overlap.
    unlocked = [BudgetLock("sqlite://", "s") for _ in range(4)]
    assert _hammer(unlocked, 5).max_inside > 1


def test_budget_lock_excludes_threads_on_a_journal_file(tmp_path: Path) -> None:
    url = str(tmp_path / "optuna.journal")
    shared = BudgetLock(url, "study")
    assert _hammer([shared] * 4, 5).max_inside == 1  # threads of one runner (n_jobs)
    separate = [BudgetLock(url, "study") for _ in range(4)]
    assert _hammer(separate, 5).max_inside == 1  # one lock object per worker


def test_budget_lock_excludes_threads_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    assert _hammer([BudgetLock(url, "study") for _ in range(3)], 5).max_inside == 1


@pytest.mark.postgres
def test_budget_lock_excludes_threads_on_postgres() -> None:
    with fresh_database() as url:
        locks = [BudgetLock(url, "study") for _ in range(3)]
        assert _hammer(locks, 4).max_inside == 1
        # Another study's lock is another key: it does not wait for this one.
        other = BudgetLock(url, "another-study")
        with locks[0].hold():
            done = threading.Event()

            def take_other() -> None:
                with other.hold():
                    done.set()

            thread = threading.Thread(target=take_other)
            thread.start()
            assert done.wait(10), "a different study's lock waited for this one"
            thread.join(10)


_LOCK_SCRIPT = """
import os, sys, time
from agehpo.hpo.storage import BudgetLock

url, study, log, go, rounds = sys.argv[1:6]
lock = BudgetLock(url, study)

def note(text):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{text} {os.getpid()}\\n".encode())
    finally:
        os.close(fd)

note("ready")
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
for _ in range(int(rounds)):
    with lock.hold():
        note("enter")
        time.sleep(0.05)
        note("exit")
    time.sleep(0.005)
"""


def _run_lock_processes(tmp_path: Path, url: str, n_processes: int = 2, rounds: int = 10) -> None:
    log = tmp_path / "lock.log"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOCK_SCRIPT, url, "study", str(log), str(go), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(n_processes)
    ]
    try:
        wait_for(
            lambda: log.exists() and log.read_text().count("ready") == n_processes,
            timeout=60,
            what="the lock processes to start",
        )
        go.touch()
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    events = [line.split() for line in log.read_text().splitlines() if not line.startswith("ready")]
    assert len(events) == 2 * n_processes * rounds
    holder: str | None = None
    for kind, pid in events:
        if kind == "enter":
            assert holder is None, f"{pid} entered while {holder} held the lock"
            holder = pid
        else:
            assert holder == pid, f"{pid} left a lock held by {holder}"
            holder = None
    assert len({pid for _, pid in events}) == n_processes


@pytest.mark.slow
def test_budget_lock_excludes_processes_on_a_journal_file(tmp_path: Path) -> None:
    _run_lock_processes(tmp_path, str(tmp_path / "optuna.journal"))


@pytest.mark.slow
@pytest.mark.postgres
def test_budget_lock_excludes_processes_on_postgres(tmp_path: Path) -> None:
    with fresh_database() as url:
        _run_lock_processes(tmp_path, url)


# -- torn journal -----------------------------------------------------------------------------


def _quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    return x * x


def _snapshot(study: optuna.Study) -> list[tuple[int, str, float | None, dict[str, object]]]:
    return [(t.number, t.state.name, t.value, t.params) for t in study.get_trials()]


def test_a_torn_journal_tail_is_cut_backed_up_and_the_study_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(storage=open_storage(str(path), heartbeat=False), study_name="s")
    study.optimize(_quadratic, n_trials=3)
    before = _snapshot(study)
    torn_line = b'{"op_code": 4, "worker_id": "dead-worker", "study_id": 0, "datetime_st'
    with path.open("ab") as journal:
        journal.write(torn_line)
    damaged = path.read_bytes()

    storage = open_storage(str(path))
    assert isinstance(storage, HeartbeatJournalStorage)
    reopened = optuna.load_study(study_name="s", storage=storage)
    assert _snapshot(reopened) == before
    backups = list(tmp_path.glob("optuna.journal.torn-*.bak"))
    assert len(backups) == 1, backups
    assert backups[0].read_bytes() == damaged
    assert path.read_bytes() == damaged[: -len(torn_line)]

    reopened.optimize(_quadratic, n_trials=2)
    # A fresh reader, as another process would be: every line is whole JSON, nothing lost.
    text = path.read_bytes()
    assert text.endswith(b"\n")
    for line in text.splitlines():
        json.loads(line)
    fresh = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert _snapshot(fresh)[:3] == before
    assert [t.number for t in fresh.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in fresh.trials)
    # A whole journal is left alone: no second backup.
    open_storage(str(path))
    assert len(list(tmp_path.glob("optuna.journal.torn-*.bak"))) == 1


# -- heartbeats on journal files -------------------------------------------------------------


class _Clock:
    """Wall-clock time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _journal_storage(tmp_path: Path, clock: _Clock) -> HeartbeatJournalStorage:
    backend = JournalFileBackend(str(tmp_path / "optuna.journal"))
    return HeartbeatJournalStorage(backend, 1, 2, retry_trial, clock=clock)


def test_open_storage_turns_heartbeats_on_with_the_settings(
    tmp_path: Path, short_heartbeats: tuple[int, int]
) -> None:
    assert short_heartbeats == (1, 2)
    journal = open_storage(str(tmp_path / "optuna.journal"))
    assert isinstance(journal, HeartbeatJournalStorage)
    assert (journal.get_heartbeat_interval(), journal.grace_period) == (1, 2)
    assert journal.get_heartbeat_stale_trial_callback() is retry_trial
    rdb = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert isinstance(rdb, optuna.storages.RDBStorage)
    assert (rdb.heartbeat_interval, rdb.grace_period) == (1, 2)
    assert rdb.heartbeat_stale_trial_callback is retry_trial
    assert not isinstance(
        open_storage(str(tmp_path / "b.journal"), heartbeat=False), _compat.Heartbeat
    )


def test_a_silent_running_trial_is_failed_and_retried_once_a_beating_one_is_not(
    tmp_path: Path,
) -> None:
    clock = _Clock()
    storage = _journal_storage(tmp_path, clock)
    study = optuna.create_study(storage=storage, study_name="hb")
    never_beat, beat_once, alive = (study.ask(SPACE) for _ in range(3))
    storage.record_heartbeat(_compat.trial_id(beat_once))
    clock.now += 1.0  # within the grace period (2 s): nothing happens
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 3
    clock.now += 3.0
    with _compat.heartbeat_thread(study, alive):  # Optuna's thread: it beats as it starts
        pass
    assert study.get_trials()[alive.number].system_attrs[HEARTBEAT_ATTR] == clock.now
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["failed_trial"] for t in retries] == [
        never_beat.number,
        beat_once.number,
    ]
    for retry in retries:
        failed = retry.system_attrs["failed_trial"]
        assert retry.system_attrs["retry_history"] == [failed]
        assert retry.params == trials[failed].params
        assert HEARTBEAT_ATTR not in retry.system_attrs
    # Failing again changes nothing: each dead trial is retried once.
    optuna.storages.fail_stale_trials(study)
    assert len(study.get_trials()) == 5
    study.tell(alive, 0.5)


def test_a_retry_that_just_started_is_not_stale(tmp_path: Path) -> None:
    storage = _journal_storage(tmp_path, _Clock())
    study = optuna.create_study(storage=storage, study_name="hb")
    dead = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"x": 0.5},
        distributions=SPACE,
        system_attrs={HEARTBEAT_ATTR: time.time() - 10},
    )
    dead.datetime_start = datetime.datetime.now() - datetime.timedelta(seconds=10)
    study.add_trial(dead)
    optuna.storages.fail_stale_trials(study)
    retry = study.ask()  # the WAITING retry, RUNNING from now on
    assert retry.number == 1
    assert study.get_trials()[retry.number].system_attrs["failed_trial"] == 0
    # Another worker checks for stale trials before this one's first heartbeat lands.
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[retry.number].state == TrialState.RUNNING


# -- SQLite under a long lock ------------------------------------------------------------------


def _hold_exclusive(path: Path, seconds: float, locked: threading.Event) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_sqlite_waits_for_a_lock_instead_of_failing(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert isinstance(storage, optuna.storages.RDBStorage)
    with storage.engine.connect() as connection:
        busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert busy_ms == SQLITE_BUSY_TIMEOUT_S * 1000


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_workers_creating_one_schema_at_once_all_open_it(tmp_path: Path, backend: str) -> None:
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path}/optuna.db"
        else:
            url = stack.enter_context(fresh_database())
        barrier = threading.Barrier(6)
        opened: list[object] = []

        def open_at_once() -> None:
            barrier.wait(30)
            opened.append(open_storage(url))

        threads = [threading.Thread(target=open_at_once) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(opened) == 6
        optuna.create_study(storage=url, study_name="s")


@pytest.mark.slow
def test_a_runner_survives_a_7s_sqlite_lock_mid_trial_and_finishes(
    tmp_path: Path, tiny_data: PreparedData, short_heartbeats: tuple[int, int]
) -> None:
    # A real lock held for real seconds: the unit tier checks the busy timeout instead.
    assert SQLITE_BUSY_TIMEOUT_S > 7
    db = tmp_path / "optuna.db"
    url = f"sqlite:///{db}"
    study = optuna.create_study(
        storage=open_storage(url),
        study_name="locked",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    locked = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(db, 7.0, locked))
    held_at: list[float] = []

    def take_lock_mid_trial(trial: optuna.Trial, epoch: int, metrics: object) -> None:
        # Mid-trial: the next report() and the heartbeat thread both meet the lock.
        if trial.number == 1 and epoch == 1 and not held_at:
            holder.start()
            assert locked.wait(30), "could not take the exclusive lock"
            held_at.append(time.monotonic())

    objective = Objective(
        tiny_data,
        n_epochs=2,
        batch_size=64,
        device=tiny_data.train.x.device,
        seed=1,
        epoch_hooks=[take_lock_mid_trial],
    )
    runner = TrialRunner(study, objective, n_trials=4, budget_lock=BudgetLock(url, "locked"))
    try:
        ran = runner.run()
        finished = time.monotonic()
    finally:
        if holder.is_alive() or held_at:
            holder.join(60)
    assert held_at, "the lock was never taken"
    assert finished - held_at[0] >= 6.0, "the runner did not have to wait for the lock"
    assert sorted(ran) == [0, 1, 2, 3]
    reloaded = optuna.load_study(study_name="locked", storage=url)
    assert [t.state for t in reloaded.trials] == [TrialState.COMPLETE] * 4
    assert all(sorted(t.intermediate_values) == [1, 2] for t in reloaded.trials)
    # The wait (7 s) was longer than the grace period (2 s), yet nothing was failed as stale.
    assert not any("retry_history" in t.system_attrs for t in reloaded.trials)
