"""Owner tags: a RUNNING parent of a dead process on this host is repaired at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from om_helpers import all_runs, make_objective, trial_runs

from optuna_mlflow import MLflowCallback, ensure_study_uid
from optuna_mlflow._owner import owner_is_gone, parse_owner, process_owner

OWNER = "optuna_mlflow.owner"
LINUX = Path("/proc/self/stat").exists()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid is free
    return child.pid


def test_process_owner_names_this_process() -> None:
    owner = parse_owner(process_owner())
    assert owner is not None
    assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
    assert (owner.start is not None) == LINUX
    assert not owner_is_gone(process_owner())


@pytest.mark.slow
def test_owner_is_gone_only_for_a_known_dead_process_of_this_host() -> None:
    host = socket.gethostname()
    assert owner_is_gone(f"{host}:{_dead_pid()}:123")
    assert owner_is_gone(f"{host}:{_dead_pid()}")
    assert not owner_is_gone(f"another-host-{host}:{_dead_pid()}:1")  # heartbeat decides
    for unreadable in (None, "", "garbage", f"{host}:abc:1"):
        assert not owner_is_gone(unreadable)
    if LINUX:
        me = parse_owner(process_owner())
        assert me is not None and me.start is not None
        # The same pid, started at another time: the pid was reused, the owner is gone.
        assert owner_is_gone(f"{host}:{me.pid}:{int(me.start) + 1}")
        assert owner_is_gone(f"{host}:{_dead_pid()}:1:{me.pidns}")
        # Another pid namespace on this host (a container with host networking): unknown.
        assert not owner_is_gone(f"{host}:{_dead_pid()}:1:{me.pidns}0")


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="zombies are read from /proc")
def test_a_killed_unreaped_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tag = f"{socket.gethostname()}:{child.pid}:{_stat_start(child.pid)}"
        assert not owner_is_gone(tag)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
        assert owner_is_gone(tag)
    finally:
        child.kill()
        child.wait()


def _stat_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]


_DYING = """
import os, optuna
from optuna_mlflow import MLflowCallback
study = optuna.load_study(study_name="owned", storage={storage!r})
cb = MLflowCallback(
    tracking_uri={uri!r}, parent_run=True, metric_name="acc", heartbeat_interval=3600
)

def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    cb.log_step(trial, 0, {{"loss": x}})
    cb.flush()
    print(cb.parent_run_id, flush=True)
    os._exit(0)  # dies mid-trial: nothing is closed

study.optimize(objective, n_trials=1, callbacks=[cb])
"""


@pytest.mark.slow
def test_reconcile_ends_a_same_host_dead_parent_at_once(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="owned", storage=storage, direction="maximize")
    ensure_study_uid(study)
    script = textwrap.dedent(_DYING.format(storage=storage, uri=tracking_uri))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    dead_parent = done.stdout.split()[-1]
    parent = client.get_run(dead_parent)
    assert parent.info.status == "RUNNING"
    owner = parse_owner(parent.data.tags[OWNER])
    assert owner is not None and owner.host == socket.gethostname() and owner.pid != os.getpid()
    (dead_trial,) = trial_runs(client, parent.info.experiment_id).values()
    assert dead_trial.data.tags[OWNER] == parent.data.tags[OWNER]

    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as cb:
        # The heartbeat is fresh and stale_after an hour: only the owner tells it is dead.
        report = cb.reconcile(study, stale_after=3600)
        assert report.parents_killed == [dead_parent]
        assert report.runs_killed == [dead_trial.info.run_id]
        current = client.get_run(cb.parent_run_id or "")
        assert current.data.tags[OWNER] == process_owner()
    ended = client.get_run(dead_parent)
    assert ended.info.status == "KILLED"
    assert "is gone" in ended.data.tags["optuna_mlflow.end_reason"]
    assert client.get_run(dead_trial.info.run_id).info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in all_runs(client))


def test_a_dead_worker_s_trial_run_under_a_live_parent_is_repaired(
    tracking_uri: str, client: MlflowClient
) -> None:
    study = optuna.create_study(study_name="shared", direction="maximize")
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    writer = cb.session(study).writer
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    # A worker (another process of this host) opened this trial's run, then died.
    dead = f"{socket.gethostname()}:{_dead_pid()}:1"
    run_id = writer.create_run(trial.number, tags={OWNER: dead})
    alive = writer.create_run(99)  # this process's own run under the same live parent
    report = cb.reconcile(study, stale_after=3600)
    assert report.runs_killed == [run_id]
    assert client.get_run(run_id).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"
    cb.close()
    client.set_terminated(alive)


def test_close_ends_a_given_parent_only_when_asked_and_owned_ones_always(
    tracking_uri: str, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = client.create_experiment("given")
    project = client.create_run(exp, run_name="mlflow-run").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", project)
    never_used = MLflowCallback(tracking_uri=tracking_uri, parent_run=True)
    never_used.close("KILLED")
    assert client.get_run(project).info.status == "RUNNING"
    # The `mlflow run` process died: this process ends its run, though no trial ran yet.
    never_used.close("KILLED", end_parent=True)
    assert client.get_run(project).info.status == "KILLED"
    never_used.close("FAILED", end_parent=True)  # ended already: left as it is
    assert client.get_run(project).info.status == "KILLED"

    monkeypatch.delenv("MLFLOW_RUN_ID")
    own = MLflowCallback(tracking_uri=tracking_uri, parent_run=True)
    study = optuna.create_study(study_name="own")
    study.optimize(make_objective(), n_trials=1, callbacks=[own], catch=(RuntimeError,))
    own.close("FAILED", end_parent=False)  # a parent it opened is never left RUNNING
    assert client.get_run(own.parent_run_id or "").info.status == "FAILED"
