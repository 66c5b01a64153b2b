"""``agehpo predict``: read faces, load a model without running code it carries, predict."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from agehpo.data.faces import LABEL_RANGES, DataError
from agehpo.data.pixels import pixels_from_frame
from agehpo.errors import ConfigError, quote, quote_path
from agehpo.pyfunc import LOADER_MODULE, AgePredictor, _load_pyfunc
from agehpo.urls import redact, sqlite_file


def read_faces(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 faces (rows, 2304) of a CSV with a ``pixels`` column or 2304 numeric columns, and
    its int64 ages when it has an ``age`` column (else None)."""
    shown = f"data={quote_path(path)}"
    if not Path(path).is_file():
        raise DataError(f"{shown} is not a file; expected the path of a CSV of faces")
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise DataError(
            f"{shown} cannot be read as CSV ({quote(first)}); expected a header and rows"
        ) from None
    if frame.empty:
        raise DataError(f"{shown} has a header but no rows; expected at least one face")
    features = frame.drop(columns=["age", "ethnicity", "gender", "img_name"], errors="ignore")
    try:
        pixels = pixels_from_frame(features)
    except DataError as error:
        raise DataError(f"{shown} {error}") from None
    if "age" not in frame.columns:
        return pixels, None
    ages = pd.to_numeric(frame["age"], errors="coerce").to_numpy(dtype=np.float64)
    _, lo, hi = LABEL_RANGES[0]
    bad = np.flatnonzero(~np.isfinite(ages) | (ages != np.round(ages)) | (ages < lo) | (ages > hi))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{shown} row {row}: age {quote(frame['age'].iloc[row])} is not accepted; expected "
            f"whole years {lo}..{hi}, or no age column"
        )
    return pixels, ages.astype(np.int64)


def _checked_data_dir(model_uri: str, model_dir: Path | None = None) -> str:
    """The MLmodel's pyfunc ``data`` path, once it names agehpo's loader (else ConfigError)."""
    shown = f"model={quote_path(model_uri)}"
    try:
        conf = Model.load(str(model_dir or model_uri)).flavors.get("python_function", {})
    except (MlflowException, OSError, ValueError) as error:
        first = str(getattr(error, "message", error)).strip().splitlines()[:1] or [""]
        raise ConfigError(
            f"{shown} cannot be read ({quote(first[0])}); expected a model URI such as "
            "models:/age-predictor@champion, runs:/<id>/model or a local model folder"
        ) from None
    loader, data = conf.get("loader_module"), conf.get("data")
    if loader != LOADER_MODULE or not isinstance(data, str):
        how = f"names loader_module {quote(loader)}" if loader else "names no pyfunc loader"
        if "python_model" in conf:
            how += f" and a pickled python_model {quote(conf['python_model'])}"
        raise ConfigError(
            f"{shown} is refused: its MLmodel {how}; agehpo predict loads only models saved "
            f"by agehpo (loader_module {LOADER_MODULE}), since loading any other runs the "
            "code it names; use mlflow.pyfunc.load_model for a model you trust"
        )
    return data


def _check_tracking_store(model_uri: str) -> None:
    """A ``models:/`` or ``runs:/`` URI needs the store that logged it; MLflow would create an
    empty SQLite file in its place (the default ``sqlite:///mlflow.db`` of another folder)."""
    if not model_uri.startswith(("models:/", "runs:/")):
        return
    tracking_uri = mlflow.get_tracking_uri()
    database = sqlite_file(tracking_uri)
    if database is not None and not database.is_file():
        where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default"
        raise ConfigError(
            f"model={quote_path(model_uri)} needs the tracking store that registered it, but "
            f"{where} tracking URI {quote_path(redact(tracking_uri))} names no existing file; "
            "set MLFLOW_TRACKING_URI to the store the study printed (e.g. "
            "sqlite:////abs/path/mlflow.db or http://host:5000), or run where its mlflow.db is"
        )


def load_checked(model_uri: str) -> AgePredictor:
    """Load an agehpo model (``models:/name@alias``, ``runs:/...``, ``models:/<model id>`` or a
    folder) without running any code or pickle that came with it; a one-line ConfigError says
    why a model was refused or did not load."""
    shown = f"model={quote_path(model_uri)}"
    # MLflow then refuses to unpickle, and draws no progress bars (an error stays one line)
    off = dict.fromkeys(
        ("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"), "false"
    )
    _check_tracking_store(model_uri)
    with mock.patch.dict(os.environ, off), tempfile.TemporaryDirectory(prefix="agehpo-") as tmp:
        _checked_data_dir(model_uri)  # checked before the download, and again after it
        try:
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        except (MlflowException, OSError) as error:
            raise ConfigError(f"{shown} cannot be downloaded ({quote(error)})") from None
        data = (local / _checked_data_dir(model_uri, local)).resolve()
        if not data.is_relative_to(local.resolve()):
            raise ConfigError(f"{shown} is refused: its data path leaves the model folder")
        try:
            return _load_pyfunc(str(data))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise ConfigError(
                f"{shown} does not hold loadable agehpo weights and params ({quote(error)})"
            ) from None
