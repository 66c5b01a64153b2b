"""The registered MLflow model: predict age ranges from 48x48 face pixels.

Saved as safetensors weights plus a params JSON and loaded through ``loader_module`` (this
module's ``_load_pyfunc``), so loading unpickles nothing. ``agehpo predict`` loads through
:func:`agehpo.predict.load_checked`, which refuses any other loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from safetensors.torch import load_file, save_file

from agehpo.data import AGE_RANGES, DataError, preprocess
from agehpo.data.pixels import pixels_from_frame
from agehpo.errors import UserError
from agehpo.nn.model import AgeNet, build_model
from agehpo.nn.train import predict_probabilities

WEIGHTS_FILE = "weights.safetensors"
PARAMS_FILE = "params.json"
PROBABILITY_COLUMNS = [f"prob_age_{age_range}" for age_range in AGE_RANGES]
# What this loader imports besides mlflow (which MLflow adds to the requirements itself).
SERVING_DISTRIBUTIONS = ("torch", "safetensors", "pandas", "numpy")
LOADER_MODULE = "agehpo.pyfunc"


class PredictionInputError(UserError, ValueError):
    """The input frame is not faces in the pixel format; the message is one line."""


def save_weights(
    directory: Path, params: dict[str, Any], state_dict: dict[str, torch.Tensor], img_size: int
) -> None:
    """Write the weights and the params that ``_load_pyfunc`` rebuilds the network from.

    Args:
        directory: The model's data folder (created if missing).
        params: The trial's hyperparameters.
        state_dict: The trained weights.
        img_size: The side length the network was trained on.
    """
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in state_dict.items()}, directory / WEIGHTS_FILE)
    (directory / PARAMS_FILE).write_text(json.dumps({**params, "img_size": img_size}, indent=2))


def serving_requirements() -> list[str]:
    """The pip requirements of a logged model, pinned to the versions that trained it.

    agehpo is not on PyPI, so the model carries its code (``code_paths``) instead; local
    version labels (``+cpu``) are dropped, as MLflow does.

    Returns:
        ``name==version`` lines.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in SERVING_DISTRIBUTIONS]


def signature() -> ModelSignature:
    """The output columns; the input has no schema, as the model takes two layouts.

    Returns:
        Labels and age-bin probabilities, with ``inputs=None``.
    """
    kinds = {"age_bin": "long", "age_range": "string", "ethnicity": "long", "gender": "long"}
    kinds.update(dict.fromkeys(PROBABILITY_COLUMNS, "double"))
    outputs: list[ColSpec | TensorSpec] = [ColSpec(kind, name) for name, kind in kinds.items()]
    return ModelSignature(inputs=None, outputs=Schema(outputs))


class AgePredictor:
    """A loaded model: ``predict(frame)`` returns one row of labels per face.

    Args:
        model: The trained network.
        img_size: The side length it was trained on.
    """

    def __init__(self, model: AgeNet, img_size: int) -> None:
        self.model = model.eval()
        self.img_size = img_size

    def predict(
        self, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Predict age range, ethnicity and gender.

        Args:
            model_input: A ``pixels`` column or 2304 numeric columns.
            params: Unused; part of MLflow's pyfunc interface.

        Returns:
            Columns age_bin, age_range, ethnicity, gender and one probability per age bin.
        """
        try:
            pixels = pixels_from_frame(pd.DataFrame(model_input))
        except DataError as error:
            raise PredictionInputError(str(error)) from None
        return self.predict_pixels(pixels)

    def predict_pixels(self, pixels: np.ndarray) -> pd.DataFrame:
        """:meth:`predict` for decoded faces.

        Args:
            pixels: uint8 array of shape (rows, 2304).

        Returns:
            The predictions, as :meth:`predict` returns them.
        """
        x = preprocess(pixels, self.img_size)
        probabilities = predict_probabilities(self.model, x)
        age_bin = probabilities.age.argmax(1).numpy()
        frame = pd.DataFrame({"age_bin": age_bin, "age_range": np.asarray(AGE_RANGES)[age_bin]})
        frame["ethnicity"] = probabilities.ethnicity.argmax(1).numpy()
        frame["gender"] = probabilities.gender.argmax(1).numpy()
        frame[PROBABILITY_COLUMNS] = probabilities.age.numpy().astype(np.float64)
        return frame


def _load_pyfunc(data_path: str) -> AgePredictor:
    """MLflow's loader_module hook: rebuild the network from its weights and params.

    Args:
        data_path: The folder ``save_weights`` wrote.

    Returns:
        The predictor.
    """
    directory = Path(data_path)
    params = json.loads((directory / PARAMS_FILE).read_text())
    img_size = int(params["img_size"])
    model = build_model(params, in_features=img_size * img_size)
    model.load_state_dict(load_file(directory / WEIGHTS_FILE))
    return AgePredictor(model, img_size)
