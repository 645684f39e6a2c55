"""Registers every anomalib image model as ``anomalib.<model>`` (cheap: no anomalib import).

anomalib is an optional extra: without it the plugin still loads and lists every model
as unavailable, with the command that installs it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from iadbench.api import DetectorSpec, InputError, hookimpl
from iadbench_anomalib.catalog import MODELS, ModelEntry

#: Bumped when the adapter changes what a detector computes.
ADAPTER_VERSION = "1"
INSTALL_HINT = "pip install 'iadbench[anomalib]'"
#: anomalib's names for a model's backbone (most models; its ViT models; UniNet's
#: teacher) and the adapter's for a local backbone weights file.
BACKBONE_KEYS = ("backbone", "encoder_name", "teacher_backbone")
BACKBONE_WEIGHTS = "backbone_weights"


def backbone_params(entry: ModelEntry) -> tuple[str | None, str | None]:
    """The (backbone, weights) params a model declares, for DetectorSpec."""
    if not entry.backbone:
        return None, None
    name = next((k for k in BACKBONE_KEYS if k in entry.params), None)
    return name, BACKBONE_WEIGHTS if name and BACKBONE_WEIGHTS in entry.params else None


def missing_reason() -> str | None:
    """Why anomalib cannot run here, or None. Looks the packages up without importing
    them (importing anomalib takes ~15 s)."""
    for name in ("anomalib", "lightning"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install or an import hook refusing it
            found = False
        if not found:
            return f"{name} is not installed; {INSTALL_HINT}"
    return None


def _factory(entry: ModelEntry, missing: str | None) -> Callable[..., Any]:
    def build(**params: Any):
        if missing:  # also with params, which let other unavailable models run
            raise InputError(f"anomalib.{entry.key} is unavailable: {missing}")
        from iadbench_anomalib.adapter import AnomalibDetector

        return AnomalibDetector(entry, **params)

    build.__name__ = f"anomalib_{entry.key}"
    return build


def _anomalib_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anomalib")
    except PackageNotFoundError:
        return "missing"


@hookimpl
def register_detectors(register):
    missing = missing_reason()
    anomalib_version = "missing" if missing else _anomalib_version()
    for entry in MODELS:
        reason = missing or entry.blocked_reason(entry.params)
        backbone_param, weights_param = backbone_params(entry)
        register(
            DetectorSpec(
                name=f"anomalib.{entry.key}",
                factory=_factory(entry, missing),  # takes **params: these are the declared ones
                params=dict(entry.params),
                backbone_param=backbone_param,
                weights_param=weights_param,
                description=entry.description,
                version=f"{ADAPTER_VERSION}+anomalib{anomalib_version}",
                available=reason is None,
                unavailable_reason=reason,
                tags=("anomalib", "trained" if entry.trained else "one-pass")
                + (("backbone",) if entry.backbone else ()),
                # anomalib and lightning take ~15 s to import: once per run, not per cell
                preload=() if missing else (
                    "anomalib.models", "lightning", "iadbench_anomalib.adapter", "iadbench_anomalib.training",
                ),
                published_training=dict(entry.published) if entry.published else None,
            )
        )
