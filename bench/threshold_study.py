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
the defaults study), the unweighted mean beside it, and the cells on target; then each
detector's false alarms pooled over a dataset's categories (the factory's 16 good test
images a category cannot tell 1% from 5%; its 80 together can, roughly).

F1 on these test sets is no guide to a false-alarm budget: they hold about as many
defective images as good ones (magnetic tile 52%, the factory 60%, bottle 76%), so a
looser threshold always looks better, while a line sees a few defects in a hundred
parts and pays for every false alarm. The study therefore also gives F1 at a line's
defect share (``--prevalence``, default 2%): precision recomputed from the recall and
false-alarm rate each rule achieved, pi r / (pi r + (1 - pi) f).
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
            "fpr_k": fpr["k"], "fpr_n": fpr["n"],
            "test_images": len(cell["labels"]), "calibration_images": len(cell["cal"]), "calibration": cell["calibration"]}


def pooled(rows: pd.DataFrame) -> pd.DataFrame:
    """Per detector and dataset: false alarms over all its categories' good test images
    at each fpr rule, with the 95% Clopper-Pearson interval."""
    from iadbench.calibration.verdicts import proportion

    out = []
    targets = rows[rows["rule"].str.startswith("fpr:")]
    targets = targets.assign(dataset=targets["column"].str.split("/").str[0])
    for (det, ds), g in targets.groupby(["detector", "dataset"]):
        row = {"detector": det, "dataset": ds, "good test images": int(g.groupby("rule")["fpr_n"].sum().iloc[0])}
        for rule, r in g.groupby("rule", sort=False):
            p = proportion(int(r["fpr_k"].sum()), int(r["fpr_n"].sum()))
            row[rule] = f"{p['value']:.1%} [{p['low']:.1%}, {p['high']:.1%}]"
        out.append(row)
    return pd.DataFrame(out)


def f1_at_prevalence(recall: float, fpr: float, prevalence: float) -> float:
    """F1 on a line where ``prevalence`` of the parts are defective, from a rule's
    recall and false-alarm rate (both prevalence-free)."""
    hits, alarms = prevalence * recall, (1 - prevalence) * fpr
    if hits + alarms == 0 or recall == 0:
        return 0.0
    precision = hits / (hits + alarms)
    return 2 * precision * recall / (precision + recall)


def summary(rows: pd.DataFrame, prevalence: float) -> pd.DataFrame:
    out = []
    for rule, g in rows.groupby("rule", sort=False):
        w = g["test_images"].to_numpy(float)
        judged = g["on_target"].dropna()
        line_f1 = [f1_at_prevalence(r, f, prevalence) for r, f in zip(g["recall"], g["fpr"])]
        out.append({
            "rule": f"`{rule}`",
            "cells": len(g),
            f"F1 at {prevalence:.0%} defects (weighted)": np.average(line_f1, weights=w),
            "F1 on the test set (weighted)": np.average(g["f1"], weights=w),
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
    parser.add_argument("--prevalence", type=float, default=0.02, help="defect share on the line for the line F1 (default 0.02)")
    args = parser.parse_args(argv)
    rows = pd.DataFrame([decide(c, r) for r in args.rules.split(",") for c in cells(args.runs)])
    if rows.empty:
        raise SystemExit("no cell with calibration scores in " + ", ".join(map(str, args.runs)))
    print(summary(rows, args.prevalence).to_markdown(floatfmt=".3f"))
    print()
    print(pooled(rows).to_markdown(index=False))
    if args.cells:
        shown = rows.assign(
            fpr=[f"{v:.1%} [{lo:.1%}, {hi:.1%}]" for v, lo, hi in zip(rows["fpr"], rows["fpr_low"], rows["fpr_high"])])
        print()
        print(shown.drop(columns=["fpr_low", "fpr_high", "fpr_k", "fpr_n", "threshold"]).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
