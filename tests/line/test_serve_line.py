"""The service on the line: hot reload under load, operator feedback, /metrics and the
drift signal (iadbench.deploy.server with iadbench.line.reload, feedback, telemetry,
drift). Models are pixel_gaussian at 32 px: fitted in well under a second."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="fastapi not installed (pip install 'iadbench[deploy]')")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn not installed (pip install 'iadbench[deploy]')")
httpx = pytest.importorskip("httpx", reason="httpx not installed (pip install 'iadbench[test]')")
pytest.importorskip("prometheus_client", reason="prometheus-client not installed (pip install 'iadbench[deploy]')")

from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from iadbench.deploy.server import create_app  # noqa: E402
from iadbench.deploy.uploads import png_of  # noqa: E402
from iadbench.line.drift import DriftMonitor  # noqa: E402
from iadbench.line.feedback import FeedbackError, FeedbackStore  # noqa: E402
from iadbench.line.reload import load_version  # noqa: E402
from iadbench.model import load_model, open_model, read_model_json, write_model_json  # noqa: E402
from testkit import cli  # noqa: E402

SIZE = 32
TOKEN = "line-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _noise(rng, mean: float, shape=(SIZE, SIZE, 3)) -> np.ndarray:
    return np.clip(rng.normal(mean, 20, shape), 0, 255).astype(np.uint8)


def _fit(root: Path, mean: float, version: int) -> Path:
    """pixel_gaussian on 6 noise images around ``mean``, saved with ``version``."""
    from iadbench.model.fit import fit_model, save_model
    from iadbench.plugins import get_registry
    from iadbench.types import Sample, Split

    rng = np.random.default_rng(version)
    src = root / f"train{version}"
    src.mkdir()
    train = []
    for i in range(6):
        Image.fromarray(_noise(rng, mean)).save(src / f"g{i}.png")
        train.append(Sample(src / f"g{i}.png"))
    fitted = fit_model(get_registry().detector("pixel_gaussian"), {"input_size": SIZE, "blur_sigma": 2.0, "min_std": 0.02},
                       Split("d", "c", train, []), seed=0, holdout_fraction=0.1, threshold_rule="max", threads=1,
                       workdir=root / f"work{version}", predict_batch=4)
    folder = save_model(fitted, root / f"model-v{version}", {"detector": "pixel_gaussian", "source": "test"})
    body = read_model_json(folder)
    write_model_json(folder, {**body, "version": version})
    return folder


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("serve-line")
    return {1: _fit(root, 100, 1), 2: _fit(root, 140, 2)}


@pytest.fixture
def model_dir(versions, tmp_path) -> Path:
    """A served folder holding version 1 (a copy: tests swap it)."""
    return Path(shutil.copytree(versions[1], tmp_path / "model"))


def _eager(directory: Path):
    return open_model(directory, "eager")


def _test_images() -> list[np.ndarray]:
    rng = np.random.default_rng(99)
    return [_noise(rng, m) for m in (90, 110, 130, 160)]


def _reference(folder: Path, images) -> list[float]:
    """Scores straight from the folder's detector (not through the server)."""
    model = load_model(folder)
    return [float(s) for s in model.detector.predict(np.stack(images)).scores]


def _swap(live: Path, new: Path) -> None:
    """Replace the folder the way an update does where renameat2 is missing: the new
    version built whole beside it, then two renames."""
    staged, old = live.with_name(live.name + ".new"), live.with_name(live.name + ".old")
    shutil.copytree(new, staged)
    os.rename(live, old)
    os.rename(staged, live)
    shutil.rmtree(old)


def _serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.025)
    assert server.started, "uvicorn did not start"
    return server, thread, f"http://127.0.0.1:{port}"


def test_reload_under_50_concurrent_requests(versions, model_dir):
    images = _test_images()
    refs = {v: _reference(versions[v], images) for v in (1, 2)}
    thresholds = {v: load_model(versions[v]).threshold for v in (1, 2)}
    # the two versions score differently: a mixed request would show
    assert all(abs(a - b) > 1e-2 * abs(a) for a, b in zip(refs[1], refs[2]))
    app = create_app(load_version(model_dir, _eager), token=TOKEN, model_dir=model_dir, opener=_eager,
                     batch_size=8, batch_wait_ms=5)
    server, thread, url = _serve(app)
    pngs = [png_of(im) for im in images]
    results: list[tuple[int, float, int, dict]] = []  # (image, started at, status, body)
    lock = threading.Lock()
    enough = threading.Event()
    reloaded_at: list[float] = []
    barrier = threading.Barrier(50)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
            barrier.wait()
            for n in range(40):
                started = time.monotonic()
                r = c.post("/predict", files={"image": ("x.png", pngs[(k + n) % 4], "image/png")})
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                with lock:
                    results.append(((k + n) % 4, started, r.status_code, body))
                    if len(results) >= 100:
                        enough.set()
                if reloaded_at and started > reloaded_at[0]:
                    return  # this client has sent one request after the reload

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
        for t in threads:
            t.start()
        assert enough.wait(60)
        _swap(model_dir, versions[2])
        r = httpx.post(f"{url}/reload", headers=AUTH, timeout=60)
        reloaded_at.append(time.monotonic())
        assert r.status_code == 200 and r.json()["status"] == "reloaded" and r.json()["version"] == 2, r.text
        for t in threads:
            t.join(60)
        info = httpx.get(f"{url}/model", headers=AUTH).json()
    finally:
        server.should_exit = True
        thread.join(10)
    assert [s for _, _, s, _ in results if s != 200] == []
    seen = {body["model_version"] for _, _, _, body in results}
    assert seen == {1, 2}
    for k, started, _, body in results:
        v = body["model_version"]
        assert body["score"] == pytest.approx(refs[v][k], rel=1e-4), (k, v)
        assert body["threshold"] == pytest.approx(thresholds[v])
        if started > reloaded_at[0]:
            assert v == 2
    assert info["version"] == 2 and info["model_version"] == 2


def test_poll_reload_and_a_failed_reload_keeps_serving(versions, model_dir, tmp_path, caplog):
    image = png_of(_test_images()[0])
    app = create_app(load_version(model_dir, _eager), model_dir=model_dir, opener=_eager, reload_interval=0.05)

    def wait_for(client, check, what):
        for _ in range(200):
            health = client.get("/health").json()
            if check(health):
                return health
            time.sleep(0.025)
        raise AssertionError(f"{what}: {health}")

    with TestClient(app) as client:
        assert client.get("/health").json()["model_version"] == 1
        _swap(model_dir, versions[2])
        wait_for(client, lambda h: h["model_version"] == 2, "the poll did not load version 2")
        r = client.post("/predict", files={"image": ("a.png", image, "image/png")})
        assert r.json()["model_version"] == 2
        # version 3 with corrupt weights: the reload fails, version 2 keeps serving
        broken = tmp_path / "broken"
        shutil.copytree(versions[2], broken)
        (broken / "model.safetensors").write_bytes(b"not safetensors")
        write_model_json(broken, {**read_model_json(broken), "version": 3})
        with caplog.at_level("WARNING", logger="iadbench.serve"):
            _swap(model_dir, broken)
            health = wait_for(client, lambda h: h["reload"]["error"] is not None, "the failed reload is not on /health")
        assert health["model_version"] == 2 and health["reload"]["error"]["serving"] == 2
        assert any("still serving version 2" in rec.getMessage() for rec in caplog.records)
        r = client.post("/predict", files={"image": ("a.png", image, "image/png")})
        assert r.status_code == 200 and r.json()["model_version"] == 2
        r = client.post("/reload")
        assert r.status_code == 422 and "still serving version 2" in r.json()["detail"]
        assert "\n" not in r.json()["detail"]
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    reloads = {s.labels["result"]: s.value for s in families["iadbench_model_reloads"].samples if s.name.endswith("_total")}
    assert reloads["reloaded"] == 1 and reloads["failed"] >= 2  # the poll's and POST /reload's
    assert [s.value for s in families["iadbench_model_version"].samples] == [2]


def test_feedback_refusals_and_storage(model_dir, tmp_path):
    image = _test_images()[3]
    before = {p for p in tmp_path.rglob("*")}
    app = create_app(load_version(model_dir, _eager), token=TOKEN, model_dir=model_dir, opener=_eager)
    with TestClient(app) as client:
        def feedback(files=None, json_body=None, headers=AUTH, label="false_alarm"):
            if json_body is not None:
                return client.post("/feedback", json=json_body, headers=headers)
            return client.post("/feedback", files=files, data={"label": label}, headers=headers)

        good = {"image": ("part.png", png_of(image), "image/png")}
        assert feedback(good, headers={}).status_code == 401
        assert feedback(good, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert feedback({"image": ("a.png", b"plain text, not an image\n" * 10, "image/png")}).status_code == 415
        assert feedback(good, label="looks fine").status_code == 422
        assert feedback(json_body={"result_id": "nope", "label": "false_alarm"}).status_code == 404
        assert client.post("/feedback", content=b"raw", headers={**AUTH, "content-type": "image/png"}).status_code == 415
        # a result the server still holds: its own score and version are stored
        scored = client.post("/predict", files=good, headers=AUTH).json()
        r = feedback(json_body={"result_id": scored["result_id"], "label": "false-alarm"})
        assert r.status_code == 201, r.text
        entry = r.json()
        assert entry["score"] == pytest.approx(scored["score"]) and entry["model_version"] == 1
        assert entry["label"] == "false_alarm" and entry["threshold"] == pytest.approx(scored["threshold"])
        # path tricks in the name: stored under a generated id, the name as metadata only
        names = []
        for name in ("../../escape.png", "..\\..\\win.png", "/etc/passwd", "sub/../../x.png"):
            r = feedback({"image": (name, png_of(image), "image/png")}, label="missed_defect")
            assert r.status_code == 201, (name, r.text)
            names.append(r.json()["original_name"])
        assert names == ["escape.png", "win.png", "passwd", "x.png"]
    folder = model_dir / "feedback"
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == folder or folder in p.parents for p in new), sorted(map(str, new))
    entries = FeedbackStore(model_dir).entries()
    assert len(entries) == 5 and {e["label"] for e in entries} == {"false_alarm", "missed_defect"}
    for e in entries:
        assert (folder / e["image"]).read_bytes() == png_of(image)  # the bytes as uploaded
        assert e["image"].startswith(e["id"]) and ".." not in e["image"]


def test_feedback_store_bounds_and_cli(model_dir, tmp_path, capsys):
    png = png_of(_test_images()[0])
    store = FeedbackStore(model_dir, max_entries=3)
    first = store.add(png, "a.png", "false_alarm", 1.0, 2.0, 1)
    store.add(png, "b.png", "missed_defect", 3.0, 2.0, 1)
    store.add(png, "c.png", "false_alarm", 1.5, 2.0, 1)
    with pytest.raises(FeedbackError) as full:
        store.add(png, "d.png", "false_alarm", 1.0, 2.0, 1)
    assert full.value.status == 507
    with pytest.raises(FeedbackError) as big:
        FeedbackStore(model_dir, max_bytes=len(png) * 3 + 100).add(png, "e.png", "false_alarm", 1.0, 2.0, 1)
    assert big.value.status == 507
    assert len(store.entries()) == 3 and not list((model_dir / "feedback").glob(".tmp-*"))
    capsys.readouterr()
    assert cli("feedback", str(model_dir), "--format", "json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["original_name"] for r in rows] == ["a.png", "b.png", "c.png"] and rows[0]["id"] == first["id"]
    good = tmp_path / "good"
    assert cli("feedback", str(model_dir), "--export", str(good), "--label", "false_alarm") == 0
    assert sorted(p.name for p in good.iterdir()) == sorted(r["image"] for r in rows if r["label"] == "false_alarm")
    assert cli("feedback", str(model_dir), "--label", "maybe") == 2
    assert cli("feedback", str(tmp_path / "nowhere")) == 2


def test_metrics_count_the_requests(model_dir):
    images = _test_images()
    app = create_app(load_version(model_dir, _eager), model_dir=model_dir, opener=_eager)
    other = create_app(load_version(model_dir, _eager))  # a second app: its own registry
    with TestClient(app) as client, TestClient(other) as client2:
        verdicts = [client.post("/predict", files={"image": ("a.png", png_of(im), "image/png")}).json()["verdict"]
                    for im in images[:3]]
        assert client.post("/predict", files={"image": ("a.png", b"text " * 50, "image/png")}).status_code == 415
        client.get("/health")
        client.get("/no/such/page")
        client2.get("/health")
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value
                for s in families["iadbench_requests"].samples if s.name == "iadbench_requests_total"}
    assert requests == {("/predict", "200"): 3, ("/predict", "415"): 1, ("/health", "200"): 1, ("other", "404"): 1}
    counts = {s.labels["verdict"]: s.value for s in families["iadbench_verdicts"].samples if s.name.endswith("_total")}
    assert counts == {v: verdicts.count(v) for v in set(verdicts)}
    latency = {s.labels["endpoint"]: s.value for s in families["iadbench_request_seconds"].samples
               if s.name.endswith("_count")}
    assert latency["/predict"] == 4
    ratio = [s.value for s in families["iadbench_score_ratio"].samples if s.name.endswith("_count")]
    assert ratio == [3]
    assert [s.value for s in families["iadbench_model_version"].samples] == [1]


def test_drift_flags_a_shifted_stream_not_a_calibration_like_one():
    rng = np.random.default_rng(3)
    false_flags = 0
    for _ in range(200):
        calm = DriftMonitor(rng.normal(0, 1, 300), window=200)
        for s in rng.normal(0, 1, 200):
            calm.add(s)
        false_flags += calm.state()["flagged"]
    assert false_flags <= 4  # alpha 0.001: about 0.2 expected in 200
    shifted = DriftMonitor(rng.normal(0, 1, 300), window=200)
    for s in rng.normal(0.8, 1, 200):
        shifted.add(s)
    state = shifted.state()
    assert state["flagged"] and state["p_value"] < 1e-3 and state["observed"] > 2 * state["expected"]
    # the expected share is (k+1)/(n+1): 16/301 for 300 calibration scores at 0.95
    assert state["expected"] == pytest.approx(16 / 301)
    low = DriftMonitor(rng.normal(0, 1, 300), window=200)
    for s in rng.normal(-1.5, 1, 200):
        low.add(s)
    assert low.state()["flagged"]  # scores falling away is drift too
    assert DriftMonitor([]).state() == {"available": False, "reason": DriftMonitor([]).state()["reason"]}


def test_drift_on_health(model_dir):
    # calibration scores far below anything a test image scores: every score is above the cutoff
    model = load_version(model_dir, _eager, {"window": 20, "min_count": 10}).model
    model.calibration = {**(model.calibration or {}), "scores": [0.001 * i for i in range(1, 41)]}
    app = create_app(model, drift={"window": 20, "min_count": 10})
    with TestClient(app) as client:
        assert client.get("/health").json()["drift"]["count"] == 0
        png = png_of(_test_images()[3])
        for _ in range(12):
            assert client.post("/predict", files={"image": ("a.png", png, "image/png")}).status_code == 200
        drift = client.get("/health").json()["drift"]
        metrics = client.get("/metrics").text
    assert drift["count"] == 12 and drift["observed"] == 1.0 and drift["flagged"] and drift["model_version"] == 1
    assert "iadbench_drift_flagged 1.0" in metrics
