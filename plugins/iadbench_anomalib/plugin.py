"""Registers every anomalib image model as ``anomalib.<model>`` (cheap: no anomalib import)."""

from __future__ import annotations

from typing import Any, Callable

from iadbench.api import DetectorSpec, hookimpl
from iadbench_anomalib.catalog import MODELS, ModelEntry

#: Bumped when the adapter changes what a detector computes.
ADAPTER_VERSION = "1"


def _factory(entry: ModelEntry) -> Callable[..., Any]:
    def build(**params: Any):
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
    anomalib_version = _anomalib_version()
    for entry in MODELS:
        reason = entry.blocked_reason(entry.params)
        if anomalib_version == "missing":
            reason = "the anomalib package is not installed"
        register(
            DetectorSpec(
                name=f"anomalib.{entry.key}",
                factory=_factory(entry),
                params=dict(entry.params),
                description=entry.description,
                version=f"{ADAPTER_VERSION}+anomalib{anomalib_version}",
                available=reason is None,
                unavailable_reason=reason,
                tags=("anomalib", "trained" if entry.trained else "one-pass")
                + (("backbone",) if entry.backbone else ()),
                # anomalib and lightning take ~15 s to import: once per run, not per cell
                preload=("anomalib.models", "lightning", "iadbench_anomalib.adapter", "iadbench_anomalib.training"),
                published_training=dict(entry.published) if entry.published else None,
            )
        )
