"""The container (deploy/Dockerfile): the image serves a model folder mounted read-only,
as a non-root user, reports healthy, and gives the verdicts and scores the model gives
on this machine.

Building the image takes minutes, so the suite does not: it uses an image `make image`
built (IADBENCH_IMAGE, default iadbench:latest) and builds one only when
IADBENCH_CONTAINER_TEST=1. It skips, with the reason, without podman, without an image,
or where podman cannot start a container."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def source_digest(repo: Path) -> str:
    """deploy/source_digest.py's digest of the checkout (the label an up-to-date image has)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("source_digest", repo / "deploy" / "source_digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_digest(repo)
IMAGE = os.environ.get("IADBENCH_IMAGE", "iadbench:latest")
SIZE = 64


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def image() -> str:
    """The image to test and the podman options that start a container from it here."""
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (apt-get install podman): the container is not tested")
    stale = None
    if podman("image", "exists", IMAGE, check=False).returncode == 0:
        label = podman("image", "inspect", "--format", '{{ index .Labels "iadbench.source" }}', IMAGE, check=False).stdout.strip()
        if label != source_digest(REPO):
            stale = f"image {IMAGE} was built from other source (label {label or 'none'}, checkout {source_digest(REPO)})"
    else:
        stale = f"no image {IMAGE}"
    if stale:
        if os.environ.get("IADBENCH_CONTAINER_TEST") != "1":
            pytest.skip(f"{stale}: run `make image` (or set IADBENCH_CONTAINER_TEST=1 to build it here, minutes)")
        build = subprocess.run(["bash", "deploy/image.sh"], cwd=REPO, env={**os.environ, "IMAGE": IMAGE},
                               capture_output=True, text=True, timeout=1800)
        if build.returncode != 0:
            tail = (build.stderr or build.stdout).strip().splitlines()[-3:]
            pytest.skip(f"the image could not be built here: {' / '.join(tail)}")
    found = subprocess.run(["bash", "deploy/podman-options.sh", IMAGE], cwd=REPO, capture_output=True, text=True, timeout=120)
    if found.returncode != 0:
        pytest.skip(f"podman cannot start a container here: {found.stderr.strip().splitlines()[-1:]}")
    return found.stdout.split()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A folder holding one tiny PaDiM model folder (64 px, 4 training images) with its
    graph cached, and that model's own verdicts and scores on a good and a defective image
    (through the onnx runtime, as the service scores)."""
    import torch

    from iadbench.api import FitContext
    from iadbench.deploy.export import check_images
    from iadbench.model import open_model
    from iadbench.model.folder import write_model
    from iadbench.plugins import get_registry

    torch.set_num_threads(2)
    images = check_images((SIZE, SIZE), n=8, seed=7)
    det = get_registry().detector("padim").factory(input_size=SIZE)
    det.fit(images[:4], FitContext(seed=0))
    defective = images[5].copy()
    yy, xx = np.mgrid[0:24, 0:24]
    defective[16:40, 20:44] = (((yy // 3 + xx // 3) % 2) * 255)[..., None]  # a checkerboard no training image has
    good_score, defective_score = det.predict(np.stack([images[5], defective])).scores
    assert defective_score > 1.2 * good_score  # a threshold between them tells the verdicts apart
    root = tmp_path_factory.mktemp("models")
    write_model(root / "model", det, threshold=float(good_score + defective_score) / 2, threshold_rule="test: between the two",
                display_range=(0.0, float(defective_score)), info={})
    local = open_model(root / "model", "onnx")  # caches model.onnx in the folder, as a first use would
    assert (root / "model" / "model.onnx").is_file()
    want = {name: local.predict([img])[0] for name, img in (("good", images[5]), ("defective", defective))}
    assert not want["good"].anomalous and want["defective"].anomalous
    for p in [root, *root.rglob("*")]:  # the container's user is not this one
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root, {"good": images[5], "defective": defective}, want


def swap_in_version(live: Path, version: int) -> None:
    """The same model as a new version, swapped in whole (iadbench.line.versions)."""
    from iadbench.line.versions import swap_in
    from iadbench.model.folder import read_model_json, write_model_json

    new = live.parent / f".{live.name}.new"
    shutil.copytree(live, new)
    write_model_json(new, {**read_model_json(new), "version": version})
    for p in [new, *new.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    swap_in(new, live)
    shutil.rmtree(new)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def post_png(url: str, image: np.ndarray) -> dict:
    from iadbench.deploy.uploads import png_of

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"part.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png_of(image) + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_container_serves_a_read_only_model(image, models):
    root, images, want = models
    port, name = free_port(), f"iadbench-test-{uuid.uuid4().hex[:8]}"
    run = ["run", "-d", "--name", name, *image, "-p", f"127.0.0.1:{port}:8000",
           "-v", f"{root}:/models:ro", "--read-only", "--tmpfs", "/tmp", IMAGE, "/models/model"]
    started = time.monotonic()
    podman(*run)
    try:
        base, health = f"http://127.0.0.1:{port}", None
        while time.monotonic() - started < 120:
            try:
                health = get(base + "/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
                assert state == "running", f"the container stopped ({state}): {podman('logs', name, check=False).stderr[-2000:]}"
                time.sleep(0.25)
        assert health is not None, f"/health did not answer in 120 s: {podman('logs', name, check=False).stderr[-2000:]}"
        assert health[0] == 200 and health[1]["status"] == "ok"
        got = {kind: post_png(base + "/predict", img) for kind, img in images.items()}
        first_verdict_s = time.monotonic() - started
        # the HEALTHCHECK the image declares passes (podman runs it on demand: no systemd timers here)
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        for kind, result in want.items():
            assert got[kind]["verdict"] == ("defective" if result.anomalous else "good"), (kind, got[kind])
            # the image's torch is the CPU build, not this machine's: the cached graph scores
            assert got[kind]["score"] == pytest.approx(result.score, rel=1e-3), kind
        info = get(base + "/model")[1]
        assert info["detector"] == "padim" and info["runtime"] == "onnx"
        # the parent folder is mounted, so a new version swapped in on the host (as
        # `adbench update` does) reaches the container, and the service reloads it
        swap_in_version(root / "model", 2)
        deadline = time.monotonic() + 30
        while get(base + "/health")[1].get("model_version") != 2 and time.monotonic() < deadline:
            time.sleep(0.25)
        again = post_png(base + "/predict", images["defective"])
        assert again["model_version"] == 2 and again["score"] == pytest.approx(got["defective"]["score"], rel=1e-6)
        # not root, and the model folder cannot be written from inside
        assert podman("exec", name, "id", "-u").stdout.strip() != "0"
        assert podman("exec", name, "touch", "/models/model/x", check=False).returncode != 0
        assert not (root / "model" / "x").exists()
        print(f"container start to first verdicts: {first_verdict_s:.1f} s")
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
