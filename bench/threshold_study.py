"""The threshold study: what each threshold rule does on the line, from run folders.

    python -m bench.threshold_study RUN_DIR... [--rules fpr:0.005,fpr:0.01,...] [--cells]

Every ok cell that kept its calibration scores (``calibration.csv``: good training images
scored by models that did not fit them) and its test scores (``scores.csv``) is
re-decided under each rule, offline: the threshold comes from the calibration scores
only (``iadbench.calibration.rules.calibrate``), then is counted against the test set:
the false-alarm rate achieved on good test images (95% Clopper-Pearson interval),
recall on defective ones and F1. A rule with a false-alarm target is "on target" in a
cell when the achieved rate lies within [0.5x, 2x] of it or its interval covers it.

Per rule, means over cells weighted by test images (each test image counts once, as in
the defaults study), the unweighted mean beside it, and the cells on target.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

RULES = ("fpr:0.005", "fpr:0.01", "fpr:0.02", "fpr:0.05", "fpr:0.1", "quantile:0.99", "max")


def cells(run_dirs: list[Path]) -> list[dict]:
    """One dict per ok cell with calibration and test scores (latest record per key)."""
    out = {}
    for run in run_dirs:
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            folder = run / "cells" / rec["key"]
            if rec.get("status") != "ok" or not (folder / "calibration.csv").is_file():
                continue
            cal = pd.read_csv(folder / "calibration.csv")["score"].to_numpy(float)
            test = pd.read_csv(folder / "scores.csv")
            if not cal.size:
                continue
            out[rec["key"]] = {
                "detector": rec["detector"], "column": f"{rec['dataset']}/{rec['category']}",
                "calibration": (rec.get("threshold") or {}).get("calibration", {}).get("method"),
                "cal": cal, "labels": test["label"].to_numpy(int), "scores": test["score"].to_numpy(float),
                "f1_max": (rec.get("metrics") or {}).get("image_f1_max"),
            }
    return list(out.values())


def decide(cell: dict, rule: str) -> dict:
    from iadbench.calibration.rules import calibrate, parse_rule
    from iadbench.calibration.verdicts import rates_at

    est = calibrate(cell["cal"], rule)
    rates = rates_at(cell["labels"], cell["scores"], est.value)
    fpr, recall = rates["fpr"], rates["recall"]
    flagged = int(fpr["k"]) + int(recall["k"])
    precision = recall["k"] / flagged if flagged else float("nan")
    f1 = 2 * precision * recall["value"] / (precision + recall["value"]) if flagged and recall["value"] else 0.0
    target = parse_rule(rule).target_fpr
    on_target = None
    if target is not None and fpr["value"] is not None:
        on_target = bool(0.5 * target <= fpr["value"] <= 2 * target or fpr["low"] <= target <= fpr["high"])
    return {"detector": cell["detector"], "column": cell["column"], "rule": rule, "method": est.method,
            "threshold": est.value, "fpr": fpr["value"], "fpr_low": fpr["low"], "fpr_high": fpr["high"],
            "recall": recall["value"], "f1": f1, "f1_max": cell["f1_max"], "on_target": on_target,
            "test_images": len(cell["labels"]), "calibration_images": len(cell["cal"]), "calibration": cell["calibration"]}


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for rule, g in rows.groupby("rule", sort=False):
        w = g["test_images"].to_numpy(float)
        judged = g["on_target"].dropna()
        out.append({
            "rule": f"`{rule}`",
            "cells": len(g),
            "F1 (weighted)": np.average(g["f1"], weights=w),
            "F1 (unweighted)": g["f1"].mean(),
            "recall (weighted)": np.average(g["recall"], weights=w),
            "FPR achieved (weighted)": np.average(g["fpr"], weights=w),
            "on target": f"{int(judged.sum())}/{len(judged)}" if len(judged) else "–",
        })
    return pd.DataFrame(out).set_index("rule")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--cells", action="store_true", help="also print every cell under every rule")
    args = parser.parse_args(argv)
    rows = pd.DataFrame([decide(c, r) for r in args.rules.split(",") for c in cells(args.runs)])
    if rows.empty:
        raise SystemExit("no cell with calibration scores in " + ", ".join(map(str, args.runs)))
    print(summary(rows).to_markdown(floatfmt=".3f"))
    if args.cells:
        shown = rows.assign(
            fpr=[f"{v:.1%} [{lo:.1%}, {hi:.1%}]" for v, lo, hi in zip(rows["fpr"], rows["fpr_low"], rows["fpr_high"])])
        print()
        print(shown.drop(columns=["fpr_low", "fpr_high", "threshold"]).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
