"""The Dask executor's parts on real local clusters: GPU pinning, the stop event, task
failures, and the checks a remote cluster's stores must pass."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import optuna
import pytest
from _procs import free_port
from distributed import Client

from agehpo.config import StudyConfig
from agehpo.errors import ConfigError, WorkersFailedError
from agehpo.hpo.cluster import (
    Task,
    check_cluster,
    check_scheduler,
    connect,
    is_remote,
    local_worker_specs,
    run_tasks,
    watch_stop_event,
    worker_seed,
)
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import OrderlyStop
from agehpo.hpo.storage import BudgetLock, open_storage

# The tasks below run in the workers' processes, which cannot import a test module by name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REMOTE = "tcp://10.0.0.5:8786"
SHARED = {"storage": "postgresql://agehpo@db/optuna"}
HTTP = "http://mlflow:5000"


@pytest.fixture(scope="module")
def pinned() -> Iterator[Client]:
    """Two workers pinned as on a machine whose GPUs are 3 and 5 (no GPU needed)."""
    with connect("local", 2, ["3", "5"]) as client:
        client.wait_for_workers(2)
        yield client


def test_each_local_worker_sees_its_own_gpu_and_offers_one(pinned: Client) -> None:
    seen = pinned.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
    assert sorted(seen.values()) == ["3", "5"]
    workers = pinned.scheduler_info()["workers"].values()
    assert [w["resources"] for w in workers] == [{"GPU": 1}, {"GPU": 1}]
    assert set(pinned.run(lambda: os.environ["TQDM_DISABLE"]).values()) == {"1"}


def test_without_gpus_workers_offer_no_resource_and_see_every_device() -> None:
    specs = local_worker_specs(3, [])
    assert list(specs) == ["worker-0", "worker-1", "worker-2"]
    for spec in specs.values():
        assert spec["options"]["nthreads"] == 1
        assert "resources" not in spec["options"]
        assert "env" not in spec["options"]


def test_more_workers_than_gpus_share_them_round_robin() -> None:
    specs = local_worker_specs(3, ["0", "1"])
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["0", "1", "0"]


def test_each_worker_process_seeds_its_sampler_differently(pinned: Client) -> None:
    seeds = pinned.run(worker_seed, 13)
    assert len(set(seeds.values())) == 2 and worker_seed(13) not in seeds.values()
    assert worker_seed(13) == worker_seed(13)


def _wait_for_stop(name: str, ready: Path) -> float:
    stop = OrderlyStop(hard_exit=lambda code: None)
    watch_stop_event(name, stop, poll_s=0.1)
    ready.touch()
    assert stop.requested.wait(30)
    stop.done()
    return time.time()


def test_the_stop_event_reaches_every_running_task(pinned: Client, tmp_path: Path) -> None:
    from distributed import Event

    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    futures = [pinned.submit(_wait_for_stop, "stop-test", path, pure=False) for path in ready]
    while not all(path.exists() for path in ready):
        time.sleep(0.05)
    sent = time.time()
    Event("stop-test", client=pinned).set()
    delays = [seen - sent for seen in pinned.gather(futures)]
    assert all(0 <= delay < 3 for delay in delays), delays


def _boom(config: StudyConfig, parent: str | None, tracking_uri: str, stop_event: str) -> list[int]:
    raise ValueError(f"boom in {config.study_name}")


def _nothing(
    config: StudyConfig, parent: str | None, tracking_uri: str, stop_event: str
) -> list[int]:
    return []


@pytest.mark.parametrize("task", [_boom, _nothing])
def test_a_failed_task_is_one_line_and_an_idle_one_runs_nothing(task: Task, tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    config = StudyConfig(study_name="s", storage=storage, n_workers=2, cluster="local")
    study = optuna.create_study(study_name="s", storage=open_storage(storage))
    runner = TrialRunner(study, lambda t: 0.0, n_trials=2, budget_lock=BudgetLock(storage, "s"))
    run = lambda: run_tasks(  # noqa: E731
        config, runner, task, parent_run_id=None, tracking_uri="", stop=OrderlyStop()
    )
    if task is _nothing:
        assert run() == []
        return
    with pytest.raises(WorkersFailedError) as info:
        run()
    assert str(info.value).startswith("a worker task failed on the local Dask cluster: ")
    assert str(info.value).endswith("ValueError: boom in s") and "\n" not in str(info.value)


def test_only_addresses_name_a_remote_cluster() -> None:
    assert not is_remote("") and not is_remote("local") and is_remote(REMOTE)


@pytest.mark.parametrize(
    ("changes", "tracking", "fragments"),
    [
        ({"cluster": "nonsense"}, HTTP, ["cluster='nonsense'", "tcp://"]),
        ({"cluster": "tcp://host"}, HTTP, ["cluster='tcp://host'"]),
        ({"storage": "sqlite:///optuna.db"}, HTTP, ["storage='sqlite:///optuna.db'", "SQLite"]),
        ({"storage": "optuna.journal"}, HTTP, ["storage='optuna.journal'", "relative path"]),
        ({}, "sqlite:///mlflow.db", ["MLFLOW_TRACKING_URI='sqlite:///mlflow.db'", "mlflow server"]),
        # An absolute path is still a file on this machine.
        ({}, "sqlite:////srv/mlflow.db", ["MLFLOW_TRACKING_URI=", "mlflow server"]),
    ],
)
def test_a_remote_cluster_refuses_stores_other_machines_cannot_reach(
    changes: dict[str, str], tracking: str, fragments: list[str]
) -> None:
    config = StudyConfig(**{"cluster": REMOTE, **SHARED, **changes})
    with pytest.raises(ConfigError) as info:
        check_cluster(config, tracking)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("storage", "tracking"),
    [
        (SHARED["storage"], HTTP),
        ("/shared/optuna.journal", "postgresql://mlflow@db/mlflow"),
        ("mysql+pymysql://u@db/o", "https://mlflow.example"),
    ],
)
def test_shared_stores_pass(storage: str, tracking: str) -> None:
    check_cluster(StudyConfig(cluster=REMOTE, storage=storage), tracking)
    # Here, anything goes: the workers share this machine's files.
    check_cluster(StudyConfig(cluster="local", storage="sqlite:///o.db"), "sqlite:///m.db")


def test_a_scheduler_that_does_not_answer_is_one_line() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(ConfigError) as info:
        check_scheduler(address, timeout_s=1)
    assert time.monotonic() - began < 10
    line = str(info.value)
    assert line.startswith(f"cluster='{address}' did not answer within 1 s") and "\n" not in line


def test_a_running_scheduler_answers(pinned: Client) -> None:
    check_scheduler(pinned.scheduler.address, timeout_s=5)  # type: ignore[union-attr]
