"""Loading a saved detector back through the registry (the inverse of Detector.save)."""

from __future__ import annotations

from pathlib import Path

from iadbench.detector import Detector, read_artifact
from iadbench.plugins import Registry, get_registry


def load_detector(directory: str | Path, registry: Registry | None = None, device: str = "cpu") -> Detector:
    """The saved detector, ready to compute on ``device`` (a torch device string).

    Tensors are always saved from and read onto the CPU (safetensors keeps no device),
    so a model fitted on any device loads on any other: loaded, then moved."""
    config, tensors = read_artifact(directory)
    spec = (registry or get_registry()).detector(config["detector"])
    detector = spec.factory(**config.get("params", {}))
    detector.load_extra_config(config.get("extra", {}))
    detector.load_state_tensors(tensors)
    if str(device) != "cpu":
        detector.to(device)
    return detector
