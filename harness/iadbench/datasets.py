"""Finding where a dataset lives and building it from the registry.

Where the data is, first match wins:
  1. ``path``: an explicit folder for this dataset;
  2. ``data_root/<subdir>``: the common data root (``--data-root DIR``), under the
     dataset's conventional sub-folder (mvtec_ad/, visa/, ksdd2/);
  3. ``$IADBENCH_DATA_ROOT/<subdir>``;
  4. None: the plugin decides (the synthetic factory generates into its cache; a
     public benchmark raises a DatasetError saying where it looked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from iadbench.errors import InputError
from iadbench.plugins import Registry
from iadbench.types import Dataset, DatasetSpec

DATA_ROOT_ENV = "IADBENCH_DATA_ROOT"


def dataset_path(spec: DatasetSpec, data_root: Path | None = None, path: Path | None = None) -> Path | None:
    """Where ``spec``'s data lives by the precedence above (the folder may not exist)."""
    if path is not None:
        return Path(path).expanduser()
    if spec.subdir is None:
        return None
    if data_root is not None:
        return Path(data_root).expanduser() / spec.subdir
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    if env:
        return Path(env).expanduser() / spec.subdir
    return None


def dataset_params(spec: DatasetSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The spec's defaults overridden by ``params``; an unknown key is an InputError."""
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        known = ", ".join(sorted(spec.params)) or "none"
        raise InputError(f"dataset '{spec.name}' has no parameter '{unknown[0]}' (known: {known})")
    return {**spec.params, **params}


def resolve_dataset(
    registry: Registry,
    name: str,
    data_root: Path | None = None,
    path: Path | None = None,
    **params: Any,
) -> Dataset:
    """Build the dataset ``name`` at its resolved location with merged parameters."""
    spec = registry.dataset(name)
    return spec.factory(dataset_path(spec, data_root, path), **dataset_params(spec, params))
