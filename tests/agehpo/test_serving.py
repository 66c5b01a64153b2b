"""The champion behind `mlflow models serve`: REST answers equal in-process predictions."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from _mlflow_helpers import default_store
from _procs import free_port, running, wait_http

from agehpo.cli import main
from agehpo.config import StudyConfig
from agehpo.data import PreparedData, make_synthetic, write_csv
from agehpo.pyfunc import PROBABILITY_COLUMNS
from agehpo.study import run_study

CHAMPION = "models:/age-predictor@champion"


def _post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_the_served_champion_answers_like_the_loaded_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_data: PreparedData
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = StudyConfig(
        n_trials=2,
        n_epochs=1,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        sampler="random",
        device="cpu",
        img_size=12,
    )
    with default_store(uri, monkeypatch, tmp_path):
        result = run_study(config, track=True, data=tiny_data, out=lambda _: None)
        assert result.counts["COMPLETE"] >= 1
        faces = make_synthetic(16, seed=21)
        strings = [" ".join(map(str, row)) for row in faces.pixels]
        expected = mlflow.pyfunc.load_model(CHAMPION).predict(pd.DataFrame({"pixels": strings}))
        # agehpo predict's checked loader reads the same champion from the registry.
        faces_csv, out = tmp_path / "faces.csv", tmp_path / "preds.csv"
        write_csv(faces, faces_csv)
        argv = ["predict", "--model", CHAMPION, "--data", str(faces_csv), "--out", str(out)]
        assert main(argv) == 0
        checked = pd.read_csv(out, dtype={"age_range": str})
        assert checked["age_bin"].tolist() == expected["age_bin"].tolist()
        np.testing.assert_allclose(
            checked[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64),
            expected[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64),
            rtol=1e-6,
        )

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "AGEHPO_CACHE_DIR": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        CHAMPION,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    base = f"http://127.0.0.1:{port}"
    with running(command, env=env, cwd=tmp_path, log=tmp_path / "serve.log") as server:
        wait_http(f"{base}/ping", server, timeout=120)
        status, body = _post(
            f"{base}/invocations",
            {"dataframe_split": {"columns": ["pixels"], "data": [[s] for s in strings]}},
        )
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        assert list(served.columns) == list(expected.columns)
        assert served["age_bin"].tolist() == expected["age_bin"].tolist()
        assert served["age_range"].tolist() == expected["age_range"].tolist()
        assert served["ethnicity"].tolist() == expected["ethnicity"].tolist()
        assert served["gender"].tolist() == expected["gender"].tolist()
        np.testing.assert_allclose(
            served[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64),
            expected[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64),
            rtol=1e-6,
            atol=1e-9,
        )

        # A face with too few pixels is the client's fault (400), and the answer says why.
        status, body = _post(
            f"{base}/invocations",
            {"dataframe_split": {"columns": ["pixels"], "data": [[strings[0]], ["1 2 3"]]}},
        )
        # The model's one line is the answer's message (MLflow prefixes the request's data).
        assert status == 400, (status, body)
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "Error: row 1: pixels has 3 values, expected 2304" in body["message"], body
        assert "stack_trace" not in body
