"""``adbench run --runtime onnx``: latency measured through onnxruntime where a detector
exports, recorded in cost.runtime; metrics and cell keys as with eager."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")

from iadbench.deploy.export import check_images  # noqa: E402
from testkit import cli  # noqa: E402


def _folder(root, n_train=6):
    """An MVTec-like category of image-like 64 px pictures; defects are bright squares."""
    pics = check_images((64, 64), n=n_train + 4, seed=3)
    for i in range(n_train):
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pics[i]).save(root / "train" / "good" / f"{i:03d}.png")
    (root / "test" / "good").mkdir(parents=True)
    (root / "test" / "spot").mkdir(parents=True)
    (root / "ground_truth" / "spot").mkdir(parents=True)
    for j in range(2):
        Image.fromarray(pics[n_train + j]).save(root / "test" / "good" / f"{j:03d}.png")
        bad, mask = pics[n_train + 2 + j].copy(), np.zeros((64, 64), np.uint8)
        bad[20:36, 20:36], mask[20:36, 20:36] = 255, 255
        Image.fromarray(bad).save(root / "test" / "spot" / f"{j:03d}.png")
        Image.fromarray(mask).save(root / "ground_truth" / "spot" / f"{j:03d}_mask.png")
    return root


def test_run_measures_latency_through_onnx_where_it_exports(deploy_cache, tmp_path, capsys):
    data = _folder(tmp_path / "part")
    run_dir = tmp_path / "run"
    code = cli(
        "run", "-d", "padim", "-d", "patchcore", "-d", "pixel_gaussian", "--dataset", "folder",
        "--dataset-path", f"folder={data}", "--set", "padim.input_size=64", "--set", "patchcore.input_size=64",
        "--set", "pixel_gaussian.input_size=64", "--holdout", "0.34", "--workers", "1",
        "--run-dir", str(run_dir), "--runtime", "onnx",
    )
    assert code == 0, capsys.readouterr()
    recs = {r["detector"]: r for r in map(json.loads, (run_dir / "records.jsonl").read_text().splitlines())}
    assert set(recs) == {"padim", "patchcore", "pixel_gaussian"}
    for name in ("padim", "patchcore"):
        cost = recs[name]["cost"]
        assert cost["runtime"] == "onnx" and cost["latency_ms_p50"] > 0, cost
        assert cost["backbone_latency_ms_p50"] > 0  # the backbone in onnxruntime too
    assert "front graph" in recs["patchcore"]["cost"]["runtime_detail"]  # HNSW search stays in Python
    baseline = recs["pixel_gaussian"]["cost"]
    assert baseline["runtime"] == "eager" and "cannot be exported" in baseline["runtime_note"]
    board = (run_dir / "leaderboard.md").read_text()
    assert "| runtime" in board and "onnx" in board
    # a cost-only choice: the plan's cells keep their keys, and the value is checked
    plan = json.loads((run_dir / "run.json").read_text())["plan"]
    assert plan["runtime"] == "onnx"
    assert cli("run", "-d", "padim", "--runtime", "tensorrt", "--run-dir", str(tmp_path / "r2")) == 2
    assert "unknown runtime 'tensorrt'" in capsys.readouterr().err
