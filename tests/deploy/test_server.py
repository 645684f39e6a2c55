"""The web service through FastAPI's TestClient: endpoints, every bad upload, the
token, and micro-batching without cross-talk."""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fastapi not installed (pip install 'iadbench[deploy]')")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from iadbench.deploy.runtime import OnnxRuntime  # noqa: E402
from iadbench.deploy.server import create_app  # noqa: E402
from iadbench.deploy.uploads import bad_uploads, png_of  # noqa: E402
from iadbench.images import prepare_image  # noqa: E402
from iadbench.model import FittedModel, Model  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def model(padim, images):
    scores = padim.predict(images[4:]).scores
    return FittedModel(
        directory=Path("."), detector=padim, input_size=padim.input_size, threshold=float(np.median(scores)),
        threshold_rule="test median", display_range=(0.0, float(scores.max())), info={},
    )


@pytest.fixture(scope="module")
def runner(model, graphs):
    return Model.of(model, OnnxRuntime(graphs["padim"], threads=2))


def reference_score(model, image: np.ndarray) -> float:
    """What the detector itself gives for the image, resized as the harness resizes."""
    return float(model.detector.predict(prepare_image(image, model.input_size)[None]).scores[0])


def post(client, data: bytes, name="x.png", headers=None, **params):
    return client.post("/predict", files={"image": (name, data, "image/png")}, headers=headers or {}, params=params)


def test_endpoints_scores_and_overlay(runner, model, images):
    # a 96 px image: the service resizes it to the model's 64 px as predict does
    big = np.asarray(Image.fromarray(images[5]).resize((96, 96), Image.BILINEAR))
    with TestClient(create_app(runner)) as client:
        assert client.get("/health").json()["status"] == "ok"
        info = client.get("/model").json()
        assert info["detector"] == "padim" and info["input_size"] == [64, 64] and info["runtime"] == "onnx"
        assert "<html" in client.get("/").text.lower()
        r = post(client, png_of(big))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score"] == pytest.approx(reference_score(model, big), rel=1e-3)
        assert body["verdict"] == ("defective" if body["score"] > model.threshold else "good")
        assert body["threshold"] == pytest.approx(model.threshold)
        assert body["model_version"] == 1 and body["result_id"]  # a folder without a version is version 1
        pic = Image.open(io.BytesIO(base64.b64decode(body["map_png"])))
        assert pic.size == (96, 96)
        r = post(client, png_of(images[6]), format="png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (64, 64)
        assert float(r.headers["x-score"]) == pytest.approx(reference_score(model, images[6]), rel=1e-3)


def test_every_bad_upload_gets_its_4xx(runner, images):
    with TestClient(create_app(runner, max_body=20 * 1024 * 1024)) as client:
        for name, (data, codes) in bad_uploads(png_of(images[4])).items():
            r = post(client, data)
            assert r.status_code in codes, (name, r.status_code, r.text)
            assert r.json()["detail"] and "\n" not in r.json()["detail"], name
        assert client.post("/predict", content=b"raw bytes", headers={"content-type": "image/png"}).status_code == 415
        assert client.post("/predict", files={"other": ("a.png", png_of(images[4]))}).status_code == 422
        assert post(client, png_of(images[4]), format="gif").status_code == 422
        assert post(client, png_of(images[4])).status_code == 200  # still serving


def test_token(runner, images):
    with TestClient(create_app(runner, token=TOKEN)) as client:
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
        assert post(client, png_of(images[4])).status_code == 401
        assert post(client, png_of(images[4]), headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/model").status_code == 401
        assert post(client, png_of(images[4]), headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_micro_batching_returns_each_request_its_own_result(runner, model, images):
    # 4 distinct images posted 3 times each, all at once: batches must form, and each
    # request must get the score of the image it sent
    test = images[4:]
    expected = model.detector.predict(test).scores
    app = create_app(runner, batch_size=4, batch_wait_ms=50)
    results: dict[int, float] = {}
    with TestClient(app) as client:
        barrier = threading.Barrier(12)

        def send(k: int) -> None:
            barrier.wait()
            r = post(client, png_of(test[k % 4]))
            results[k] = r.json()["score"]

        threads = [threading.Thread(target=send, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = list(app.state.batcher.batches)
    assert max(batches) > 1 and sum(batches) == 12
    for k, score in results.items():
        assert score == pytest.approx(expected[k % 4], rel=1e-3), k
    assert len(results) == 12
