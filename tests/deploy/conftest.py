"""Tiny fitted models (64 px, 4 training images) shared by the deploy tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iadbench.api import FitContext
from iadbench.deploy.export import check_images
from iadbench.plugins import get_registry

SIZE = 64


@pytest.fixture(scope="session")
def deploy_cache(tmp_path_factory):
    """One feature/backbone cache for the session, never the user's."""
    from iadbench.backbones import cache_root

    converted = cache_root() / "backbones"  # converted weights are reused, read only
    root = tmp_path_factory.mktemp("iadbench-cache")
    if converted.is_dir():
        (root / "backbones").symlink_to(converted, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("IADBENCH_CACHE", str(root))
    mp.setenv("IADBENCH_FEATURE_CACHE", "0")
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """8 image-like 64 px pictures: the first 4 train, the rest are test images."""
    return check_images((SIZE, SIZE), n=8, seed=7)


def _fit(name: str, images: np.ndarray, **params):
    torch.set_num_threads(2)
    det = get_registry().detector(name).factory(input_size=SIZE, **params)
    det.fit(images[:4], FitContext(seed=0))
    return det


@pytest.fixture(scope="session")
def padim(deploy_cache, images):
    return _fit("padim", images)


@pytest.fixture(scope="session")
def patchcore(deploy_cache, images):
    return _fit("patchcore", images, coreset_ratio=0.5)


@pytest.fixture(scope="session")
def feature_ae(deploy_cache, images):
    return _fit("feature_ae", images, epochs=2)


@pytest.fixture(scope="session")
def conv_ae(deploy_cache, images):
    return _fit("conv_ae", images, epochs=2)


@pytest.fixture(scope="session")
def efficientad(deploy_cache, images):
    return _fit("efficientad", images, steps=2)


@pytest.fixture(scope="session")
def fitted(padim, patchcore, feature_ae, conv_ae, efficientad):
    return {"padim": padim, "patchcore": patchcore, "feature_ae": feature_ae, "conv_ae": conv_ae, "efficientad": efficientad}


@pytest.fixture(scope="session")
def graphs(fitted):
    """Each tiny model's traced ONNX graph (tracing is the slow part of an export)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")
    from iadbench.deploy.export import graph_bytes

    return {name: graph_bytes(det) for name, det in fitted.items()}


@pytest.fixture
def reuse_graphs(graphs, fitted, monkeypatch):
    """export_onnx / open_runtime use the session's traced graphs instead of tracing again."""
    from iadbench.deploy import export

    by_id = {id(det): graphs[name] for name, det in fitted.items()}
    real = export.graph_bytes
    monkeypatch.setattr(export, "graph_bytes",
                        lambda det, front=False: real(det, front=True) if front else (by_id.get(id(det)) or real(det)))
    return graphs
