"""The defaults study's rule (bench/defaults_study.py) on made-up run records, against
means computed here by numpy."""

from __future__ import annotations

import json

import numpy as np

from bench.defaults_study import STUDIES, Study, collect, render

SMALL = Study({("folder", "big"): "big", ("factory", "small"): "small"}, weighted=True)


def _record(label, dataset, category, n_test, img, pix=0.9, pro=0.8, mb=1.0, status="ok"):
    return {"detector": label, "dataset": dataset, "category": category, "status": status,
            "counts": {"test": n_test}, "metrics": {"image_auroc": img, "pixel_auroc": pix, "aupro": pro},
            "cost": {"artifact_mb": mb}}


def _run(tmp_path, name, records):
    run = tmp_path / name
    run.mkdir()
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def _pick(text, det):
    line = next(s for s in text.splitlines() if s.startswith(f"- rule, {det}:"))
    return line.split("**")[1]


def test_weighting_by_test_size_lets_the_large_dataset_decide(tmp_path):
    # padim-a wins the 20-image set by 0.10 and loses the 700-image set by 0.02:
    # alike weights pick a, test-size weights pick b.
    recs = [_record("padim-a", "folder", "big", 700, 0.94), _record("padim-a", "factory", "small", 20, 1.00),
            _record("padim-b", "folder", "big", 700, 0.96), _record("padim-b", "factory", "small", 20, 0.90)]
    found = collect([_run(tmp_path, "r", recs)])
    weighted = render(["padim-a", "padim-b"], found, SMALL)
    alike = render(["padim-a", "padim-b"], found, Study(SMALL.datasets, weighted=False))
    assert _pick(weighted, "padim") == "padim-b" and _pick(alike, "padim") == "padim-a"
    ref = np.average([0.96, 0.90], weights=[700, 20])
    assert f"| padim-b | {ref:.3f} |" in weighted


def test_ties_go_to_localisation_and_missing_datasets_get_what_they_would_need(tmp_path):
    recs = [_record("patchcore-c0.1", "folder", "big", 100, 0.950, pix=0.80),
            _record("patchcore-c0.1", "factory", "small", 100, 0.950, pix=0.80),
            _record("patchcore-x", "folder", "big", 100, 0.953, pix=0.70),
            _record("patchcore-x", "factory", "small", 100, 0.953, pix=0.70),
            _record("patchcore-y", "factory", "small", 100, 0.900),
            _record("patchcore-z", "factory", "small", 100, 0.999, status="failed")]
    text = render(["patchcore-c0.1", "patchcore-x", "patchcore-y", "patchcore-z"], collect([_run(tmp_path, "r", recs)]), SMALL)
    assert _pick(text, "patchcore") == "patchcore-c0.1"  # within 0.005 of x, localises better
    # y would need (0.948 * 200 - 0.900 * 100) / 100 = 0.996 on "big" to tie
    need = ((0.953 - 0.005) * 200 - 0.900 * 100) / 100
    assert f"- patchcore-y: not measured on big; would need image AUROC {need:.3f} there to tie: could still win" in text
    assert "patchcore-z" not in text.split("### Mean")[1]  # a failed cell is not a measurement


def test_first_ok_record_wins_in_run_order(tmp_path):
    a = _run(tmp_path, "a", [_record("padim-a", "folder", "big", 10, 0.5)])
    b = _run(tmp_path, "b", [_record("padim-a", "folder", "big", 10, 0.9)])
    assert collect([b, a])[("padim-a", "folder", "big")][0] == "b"


def test_part3_counts_factory_and_mvtec_bottle_apart():
    keys = STUDIES["part3"].datasets
    assert ("factory", "bottle") in keys and ("mvtec", "bottle") in keys and STUDIES["part3"].weighted


def test_close_localisation_goes_to_the_smaller_model_then_the_incumbent(tmp_path):
    # all three tie on image AUROC; "big" localises 0.004 better (within the margin), so
    # size decides between it and the two small ones, which are equal: the incumbent stays
    recs = []
    for label, pix, mb in (("patchcore-big", 0.904, 5.0), ("patchcore-nn1", 0.900, 2.0), ("patchcore-c0.1", 0.900, 2.0)):
        recs += [_record(label, "folder", "big", 100, 0.95, pix=pix, mb=mb), _record(label, "factory", "small", 100, 0.95, pix=pix, mb=mb)]
    text = render(["patchcore-big", "patchcore-nn1", "patchcore-c0.1"], collect([_run(tmp_path, "r", recs)]), SMALL)
    assert _pick(text, "patchcore") == "patchcore-c0.1"
    recs[0]["metrics"]["pixel_auroc"] = recs[1]["metrics"]["pixel_auroc"] = 0.92  # now 0.020 better: localisation decides
    (tmp_path / "r" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = render(["patchcore-big", "patchcore-nn1", "patchcore-c0.1"], collect([tmp_path / "r"]), SMALL)
    assert _pick(text, "patchcore") == "patchcore-big"
