"""adbench export / predict --runtime on a model folder of the tiny PaDiM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")

from iadbench.deploy import export as export_module  # noqa: E402
from iadbench.deploy.runtime import OnnxRuntime  # noqa: E402
from iadbench.model import write_model  # noqa: E402
from testkit import cli  # noqa: E402


@pytest.fixture
def model_dir(padim, graphs, tmp_path, monkeypatch):
    # the folder holds this very padim, so its traced graph is the session's
    monkeypatch.setattr(export_module, "graph_bytes", lambda det, front=False: graphs[det.name])
    return write_model(tmp_path / "model", padim, threshold=1.5, threshold_rule="quantile:0.99",
                       display_range=(0.5, 2.0), info={})


def test_export_and_predict_runtimes(model_dir, padim, images, tmp_path, capsys):
    out = tmp_path / "padim.onnx"
    assert cli("export", str(model_dir), "--out", str(out)) == 0
    rt = OnnxRuntime(out)
    assert rt.metadata["threshold"] == 1.5 and rt.metadata["display_range"] == [0.5, 2.0]
    assert cli("export", str(model_dir), "--out", str(tmp_path / "x.tflite"), "--format", "tflite") == 2
    assert cli("export", str(model_dir), "--out", str(tmp_path / "no" / "such" / "x.onnx")) == 2
    picture = tmp_path / "part.png"
    Image.fromarray(images[6]).save(picture)
    expected = float(padim.predict(images[6:7]).scores[0])
    capsys.readouterr()
    for runtime in ("onnx", "eager"):
        assert cli("predict", str(model_dir), str(picture), "--runtime", runtime, "--format", "json") == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert row["score"] == pytest.approx(expected, rel=1e-3), runtime
        assert row["verdict"] == ("defective" if expected > 1.5 else "good")
    assert cli("predict", str(model_dir), str(picture), "--runtime", "tensorrt") == 2
    assert np.isfinite(expected)
