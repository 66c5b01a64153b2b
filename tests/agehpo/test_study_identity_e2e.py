"""Two studies of one name against one MLflow store, through `mlflow run`: never mixed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _mlflow_helpers import all_runs, load_study
from _procs import ROOT, agehpo_env, run
from mlflow import MlflowClient

TINY = (
    "n_samples=600",
    "img_size=12",
    "n_epochs=1",
    "sampler=random",
    "pruner=none",
    "device=cpu",
)
UID = "optuna.study_uid"


def _mlflow_run(tmp_path: Path, uri: str, log: str, *params: str) -> str:
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local"]
    for param in (*TINY, *params):
        command += ["-P", param]
    code, output = run(
        command, env=agehpo_env(tmp_path, uri), cwd=tmp_path, log=tmp_path / log, timeout=300
    )
    assert code == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_a_second_same_name_study_never_touches_the_first_one_s_runs_or_version(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    a_storage, b_storage = str(tmp_path / "A.journal"), str(tmp_path / "B.journal")
    _mlflow_run(tmp_path, uri, "a.log", "n_trials=3", f"storage={a_storage}")
    client = MlflowClient(uri)
    a_version = client.get_model_version_by_alias("age-predictor", "champion")
    a_tags = dict(a_version.tags)

    # The user starts over in another storage file, same study name, same MLflow store.
    _mlflow_run(tmp_path, uri, "b1.log", "n_trials=3", f"storage={b_storage}", "seed=99")
    last = _mlflow_run(tmp_path, uri, "b2.log", "n_trials=4", f"storage={b_storage}", "seed=99")

    a, b = load_study(a_storage), load_study(b_storage)
    uid_a, uid_b = a.user_attrs["optuna_mlflow.study_uid"], b.user_attrs["optuna_mlflow.study_uid"]
    assert uid_a != uid_b
    champion = client.get_model_version_by_alias("age-predictor", "champion")
    assert f"Registered models:/age-predictor@champion (version {champion.version}," in last
    assert champion.tags[UID] == uid_b
    assert champion.tags["optuna.trial_number"] == str(b.best_trial.number)
    assert client.get_run(champion.run_id).data.tags[UID] == uid_b
    # A's version: still A's run, its tags exactly as A's run left them.
    assert champion.version != a_version.version
    kept = client.get_model_version("age-predictor", a_version.version)
    assert (kept.run_id, kept.tags) == (a_version.run_id, a_tags)
    assert a_tags[UID] == uid_a

    runs = all_runs(client)
    numbers: dict[str, list[int]] = {}
    for r in runs:
        if "optuna.trial_number" in r.data.tags:
            numbers.setdefault(r.data.tags[UID], []).append(int(r.data.tags["optuna.trial_number"]))
    assert {uid: sorted(n) for uid, n in numbers.items()} == {
        uid_a: [0, 1, 2],
        uid_b: [0, 1, 2, 3],
    }
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
