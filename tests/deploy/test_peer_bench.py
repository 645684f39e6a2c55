"""bench.peer: our OpenVINO export beside anomalib's own, on a tiny setup (64 px, 4
training images, 2 timed images, one round), and its command-line checks."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

from iadbench.deploy.export import check_images

SIZE = 64


def _tiny_data():
    from bench.peer import Data

    good = check_images((SIZE, SIZE), n=7, seed=3)
    bad = check_images((SIZE, SIZE), n=3, seed=4)
    bad[:, 20:40, 20:40] = 255  # a white square: a defect in the middle of each
    test = np.concatenate([good[4:], bad])
    return Data(source="synthetic", train=good[:4], test=test, labels=np.array([0, 0, 0, 1, 1, 1]),
                timed=np.array([0, 5]))


@pytest.mark.slow  # ~55 s of CPU: anomalib's import and its dynamo ONNX export (~15 s a model)
@pytest.mark.skipif(not os.environ.get("IADBENCH_PEER_TEST"),
                    reason="about a minute of CPU, more than the suite's budget allows: IADBENCH_PEER_TEST=1 runs it")
def test_peer_bench_times_ours_and_anomalibs_openvino_side_by_side(deploy_cache, tmp_path):
    pytest.importorskip("anomalib", reason="anomalib not installed (pip install 'iadbench[anomalib]')")
    pytest.importorskip("openvino", reason="openvino not installed (pip install 'iadbench[openvino]')")
    from bench.peer import measure, ours, table, theirs, torch_threads

    data = _tiny_data()
    rows = []
    with torch_threads(2):
        for method in ("padim", "patchcore"):
            det, mine = ours(method, data, threads=2)
            rows += mine + [theirs(method, data, 2, tmp_path, det)]
        measure(rows, data, rounds=1)
    assert [(r.method, r.impl) for r in rows] == [
        ("padim", "ours"), ("padim", "anomalib"),
        ("patchcore", "ours"), ("patchcore", "ours exact"), ("patchcore", "anomalib"),
    ]
    for r in rows:
        assert len(r.times) == len(r.bare_times) == 2, r.impl
        assert all(math.isfinite(t) and t > 0 for t in r.times + r.bare_times), r.impl
        assert 0.0 <= r.auroc <= 1.0, r.impl
        # each export scores as its own eager model does: the graphs are the models
        assert r.vs_eager < 1e-3, (r.method, r.impl, r.vs_eager)
    # same backbone, layers and sizes on both sides
    by = {(r.method, r.impl): r.config for r in rows}
    assert by[("padim", "ours")] == by[("padim", "anomalib")] == "blocks.2+blocks.4, d=152"
    # PatchCore: same layers and k; coresets of round(0.1 n) rows (ours) and int(0.1 n) (anomalib's)
    ours_bank, their_bank = (re.search(r"bank (\d+)", by[("patchcore", i)]) for i in ("ours exact", "anomalib"))
    assert 0 <= int(ours_bank[1]) - int(their_bank[1]) <= 1
    assert re.sub(r"bank \d+", "", by[("patchcore", "ours exact")]) == re.sub(r"bank \d+", "", by[("patchcore", "anomalib")])
    # anomalib made its compile cache in the work folder, not the current one
    assert (tmp_path / "openvino_cache").is_dir()
    lines = table(rows).splitlines()
    assert len(lines) == 2 + len(rows) + 1
    ref = next(line for line in lines if line.startswith("padim      ours "))
    assert ref.split()[6] == "1.00" and lines[-1].startswith("x ref: against ours padim")


@pytest.mark.parametrize("argv, message", [
    (["--size", "50"], "--size must be a multiple of 32 (>= 32), got 50"),
    (["--images", "0"], "--images must be >= 1, got 0"),
    (["--methods", "padim,fastflow"], "--methods fastflow: not one of padim, patchcore"),
])
def test_bad_values_are_one_line_usage_errors(argv, message, capsys):
    from bench.peer import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"bench.peer: {message}\n"


def test_data_folder_that_is_not_one_is_a_usage_error(tmp_path, capsys):
    from bench.peer import main

    assert main(["--data", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"bench.peer: --data {tmp_path / 'nowhere'}: not a folder\n"
