"""Tables of the defaults study (leaderboards/defaults-study.md) from its run folders.

    python -m bench.defaults_study RUN_DIR... [--plan leaderboards/defaults-study.toml]

Each candidate (a plan label) on each study dataset (by category: magnetic_tile,
fabric, wood, bottle) takes the first ok record found in the run folders, in the order
given; a pair with none is "not measured". Then the means over the datasets measured,
a candidate's image AUROC against its detector's previous default on the same datasets,
and the rule's verdict (README, "How defaults are chosen"): the best mean image AUROC
among candidates measured on every dataset, ties within 0.005 broken by mean pixel
AUROC + AUPRO, then by model size.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

DATASETS = {"magnetic_tile": "magnetic_tile", "fabric": "factory/fabric", "wood": "factory/wood", "bottle": "mvtec/bottle"}
PREVIOUS = {"padim": "padim-d50", "patchcore": "patchcore-c0.1"}
TIE = 0.005


def collect(run_dirs: list[Path]) -> dict[tuple[str, str], tuple[str, dict]]:
    found: dict[tuple[str, str], tuple[str, dict]] = {}
    for run in run_dirs:
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            key = (rec["detector"], rec["category"])
            if rec.get("status") == "ok" and key not in found:
                found[key] = (run.name, rec)
    return found


def _f(v, fmt="{:.3f}") -> str:
    return "" if v is None else fmt.format(v)


def render(labels: list[str], found: dict) -> str:
    out = []
    for cat, title in DATASETS.items():
        out += [f"### {title}", "", "| candidate | image AUROC | pixel AUROC | AUPRO | fit s | fit cache | ms/img p50 | model MB | run |",
                "|---|---|---|---|---|---|---|---|---|"]
        for label in labels:
            if (label, cat) not in found:
                out.append(f"| {label} | not measured | | | | | | | |")
                continue
            run, rec = found[(label, cat)]
            m, c = rec["metrics"], rec["cost"]
            cache = "warm" if (c.get("fit_feature_cache_hits") or 0) > 0 else "cold"
            out.append(f"| {label} | {_f(m.get('image_auroc'))} | {_f(m.get('pixel_auroc'))} | {_f(m.get('aupro'))} | "
                       f"{_f(c.get('fit_s'), '{:.1f}')} | {cache} | {_f(c.get('latency_ms_p50'), '{:.1f}')} | "
                       f"{_f(c.get('artifact_mb'), '{:.1f}')} | `{run}` |")
        out.append("")
    out += ["### Mean over the four study datasets", "",
            "| candidate | mean image AUROC | mean pixel AUROC | mean AUPRO | datasets measured | image AUROC vs previous default, same datasets |",
            "|---|---|---|---|---|---|"]
    means = {}
    for label in labels:
        cats = [c for c in DATASETS if (label, c) in found]
        if not cats:
            continue
        vals = {k: sum(found[(label, c)][1]["metrics"][k] for c in cats) / len(cats) for k in ("image_auroc", "pixel_auroc", "aupro")}
        full = len(cats) == len(DATASETS)
        means[label] = (vals, full, sum(found[(label, c)][1]["cost"]["artifact_mb"] for c in cats))
        prev = PREVIOUS.get(label.split("-")[0])
        delta = ""
        if prev and prev != label and all((prev, c) in found for c in cats):
            d = vals["image_auroc"] - sum(found[(prev, c)][1]["metrics"]["image_auroc"] for c in cats) / len(cats)
            delta = f"{d:+.3f} ({len(cats)} datasets)"
        show = (lambda v: f"{v:.3f}") if full else (lambda v: f"({v:.3f})")
        out.append(f"| {label} | {show(vals['image_auroc'])} | {show(vals['pixel_auroc'])} | {show(vals['aupro'])} | "
                   f"{len(cats)}/{len(DATASETS)} | {delta} |")
    out.append("")
    for det in PREVIOUS:
        eligible = {k: v for k, v in means.items() if k.startswith(det + "-") and v[1]}
        if not eligible:
            continue
        best = max(v[0]["image_auroc"] for v in eligible.values())
        tied = {k: v for k, v in eligible.items() if v[0]["image_auroc"] >= best - TIE}
        pick = max(tied, key=lambda k: (round(tied[k][0]["pixel_auroc"] + tied[k][0]["aupro"], 3), -tied[k][2]))
        out.append(f"- rule, {det}: best mean image AUROC {best:.3f}; tied within {TIE}: "
                   f"{', '.join(sorted(tied))}; pick (pixel AUROC + AUPRO, then model size): **{pick}**")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--plan", type=Path, default=Path("leaderboards/defaults-study.toml"))
    args = ap.parse_args()
    labels = [d["label"] for d in tomllib.loads(args.plan.read_text())["detector"]]
    print(render(labels, collect(args.runs)))


if __name__ == "__main__":
    main()
