"""A model's life, from fit to use, in one place:

- fit.py       ``fit_model`` (fit, calibration scores, thresholds, display range) and
               ``save_model`` (the model folder), shared by run cells and ``adbench fit``
- evaluate.py  ``evaluate``: the test set scored and measured, as a run cell records it
- folder.py    the model folder's format (``write_model``, ``load_model``)
- use.py       ``open_model``: a model folder with its runtime, images of any size in,
               ``ImageResult``s out (predict, serve, export, benchmarks)

The onnx graphs a model runs on are built and cached by iadbench.deploy.
"""

# prepare_image: where callers found it before images.py held the one preparation path
from iadbench.images import prepare_image
from iadbench.model.evaluate import Evaluation, evaluate
from iadbench.model.fit import FitResult, fit_model, save_model
from iadbench.model.folder import (
    DISPLAY_PERCENTILES,
    DISPLAY_SAMPLE,
    MODEL_FILE,
    MODEL_FORMAT,
    FittedModel,
    display_range_from_maps,
    load_model,
    model_version,
    read_model_json,
    write_model,
    write_model_json,
)
from iadbench.model.use import ImageResult, Model, open_model, predict_images

__all__ = [
    "DISPLAY_PERCENTILES", "DISPLAY_SAMPLE", "MODEL_FILE", "MODEL_FORMAT", "Evaluation", "FitResult", "FittedModel",
    "ImageResult", "Model", "display_range_from_maps", "evaluate", "fit_model", "load_model", "model_version", "open_model",
    "predict_images", "prepare_image", "read_model_json", "save_model", "write_model", "write_model_json",
]
