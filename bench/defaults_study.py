"""Tables of the defaults study (leaderboards/defaults-study.md) from its run folders.

    python -m bench.defaults_study RUN_DIR... [--plan leaderboards/defaults-study.toml]
                                              [--study part3|part1-2]

Each candidate (a plan label) on each study dataset (dataset name + category) takes the
first ok record found in the run folders, in the order given; a pair with none is "not
measured". Then each candidate's means over the datasets and the rule's verdict
(docs/defaults.md).

Part 3 (the current rule) weighs each dataset by its number of test images, so every
test image counts once: magnetic tile (740) outweighs a 40-image synthetic category,
which in parts 1-2 (equal weights) carried two picks that more data then reversed. The
best weighted mean image AUROC among candidates measured on every dataset wins;
candidates within 0.005 of it are tied and the better weighted pixel AUROC + AUPRO
wins; where that is within 0.005 too, the smaller model, and among equal sizes the
incumbent default. A candidate missing datasets gets the image AUROC it
would need on them to reach the tie margin; above 1.0 it cannot win.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

TIE = 0.005
PREVIOUS = {"padim": "padim-d50", "patchcore": "patchcore-c0.1"}  # the defaults before the study
INCUMBENT = {"padim": "padim-l2.4-d152-320px", "patchcore": "patchcore-c0.1"}  # the defaults when part 3 began
QUALITY = ("image_auroc", "pixel_auroc", "aupro")


@dataclass(frozen=True)
class Study:
    datasets: dict[tuple[str, str], str]  # (record dataset, category) -> table title
    weighted: bool  # weights = test images per dataset; else each dataset alike


STUDIES = {
    # parts 1-2: factory generator v1's fabric and wood read as folders, equal weights
    "part1-2": Study({("folder", "magnetic_tile"): "magnetic_tile", ("folder", "fabric"): "factory v1/fabric",
                      ("folder", "wood"): "factory v1/wood", ("mvtec", "bottle"): "mvtec/bottle"}, weighted=False),
    "part3": Study({("folder", "magnetic_tile"): "magnetic_tile",
                    **{("factory", c): f"factory v2/{c}" for c in ("fabric", "metal", "wood", "nut", "bottle")},
                    ("mvtec", "bottle"): "mvtec/bottle"}, weighted=True),
}


def collect(run_dirs: list[Path]) -> dict[tuple[str, str, str], tuple[str, dict]]:
    """(label, dataset, category) -> (run folder name, first ok record)."""
    found: dict[tuple[str, str, str], tuple[str, dict]] = {}
    for run in run_dirs:
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            key = (rec["detector"], rec["dataset"], rec["category"])
            if rec.get("status") == "ok" and key not in found:
                found[key] = (run.name, rec)
    return found


def _f(v, fmt="{:.3f}") -> str:
    return "" if v is None else fmt.format(v)


class Means(NamedTuple):
    quality: dict[str, float]  # QUALITY -> mean over the datasets measured
    keys: list[tuple[str, str]]  # the datasets measured
    full: bool  # measured on every study dataset
    model_mb: float  # summed over the datasets measured


def weighted_means(label: str, found: dict, study: Study) -> Means:
    """A candidate's means of QUALITY over the study datasets it was measured on."""
    keys = [k for k in study.datasets if (label, *k) in found]
    recs = [found[(label, *k)][1] for k in keys]
    w = [r["counts"]["test"] if study.weighted else 1.0 for r in recs]
    quality = {q: sum(wi * r["metrics"][q] for wi, r in zip(w, recs)) / sum(w) for q in QUALITY} if recs else {}
    return Means(quality, keys, len(keys) == len(study.datasets), sum(r["cost"]["artifact_mb"] for r in recs))


def images_per_dataset(found: dict, study: Study) -> dict[tuple[str, str], int]:
    """Each study dataset's number of test images, read from any record of it."""
    return {(ds, cat): rec["counts"]["test"] for (_, ds, cat), (_, rec) in found.items() if (ds, cat) in study.datasets}


def choose(tied: dict[str, Means], incumbent: str) -> tuple[str, str]:
    """Among candidates tied on image AUROC: the best localisation (pixel AUROC + AUPRO);
    those within TIE of it are tied again and the smallest model wins; equal sizes (to
    1%) keep the incumbent default, else the higher image AUROC."""
    loc = {k: v.quality["pixel_auroc"] + v.quality["aupro"] for k, v in tied.items()}
    best_loc = max(loc.values())
    near = [k for k in tied if loc[k] >= best_loc - TIE]
    if len(near) == 1:
        return near[0], f"pixel AUROC + AUPRO {best_loc:.3f}, the rest more than {TIE} lower"
    small = min(tied[k].model_mb for k in near)
    cheapest = [k for k in near if tied[k].model_mb <= small * 1.01]
    if incumbent in cheapest:
        pick = incumbent
    else:
        pick = max(cheapest, key=lambda k: tied[k].quality["image_auroc"])
    return pick, (f"localisation within {TIE} among {', '.join(sorted(near))}; smallest model "
                  f"({small:.1f} MB summed over the datasets)" + ("; the incumbent among equals" if len(cheapest) > 1 and pick == incumbent else ""))


def render(labels: list[str], found: dict, study: Study) -> str:
    out = []
    counts = images_per_dataset(found, study)
    for (ds, cat), title in study.datasets.items():
        n = counts.get((ds, cat))
        out += [f"### {title}" + (f" ({n} test images)" if n else ""), "",
                "| candidate | image AUROC | pixel AUROC | AUPRO | fit s | fit cache | ms/img p50 | model MB | run |",
                "|---|---|---|---|---|---|---|---|---|"]
        for label in labels:
            if (label, ds, cat) not in found:
                out.append(f"| {label} | not measured | | | | | | | |")
                continue
            run, rec = found[(label, ds, cat)]
            m, c = rec["metrics"], rec["cost"]
            cache = "warm" if (c.get("fit_feature_cache_hits") or 0) > 0 else "cold"
            out.append(f"| {label} | {_f(m.get('image_auroc'))} | {_f(m.get('pixel_auroc'))} | {_f(m.get('aupro'))} | "
                       f"{_f(c.get('fit_s'), '{:.1f}')} | {cache} | {_f(c.get('latency_ms_p50'), '{:.1f}')} | "
                       f"{_f(c.get('artifact_mb'), '{:.1f}')} | `{run}` |")
        out.append("")
    n_ds = len(study.datasets)
    how = "weighted by test images" if study.weighted else "each dataset alike"
    out += [f"### Mean over the {n_ds} study datasets ({how})", "",
            "| candidate | mean image AUROC | mean pixel AUROC | mean AUPRO | datasets measured | image AUROC vs previous default, same datasets | unweighted mean image AUROC |",
            "|---|---|---|---|---|---|---|"]
    means: dict[str, Means] = {}
    for label in labels:
        m = weighted_means(label, found, study)
        if not m.keys:
            continue
        means[label] = m
        prev = PREVIOUS.get(label.split("-")[0])
        delta = ""
        if prev and prev != label and all((prev, *k) in found for k in m.keys):
            sub = Study({k: study.datasets[k] for k in m.keys}, study.weighted)
            d = m.quality["image_auroc"] - weighted_means(prev, found, sub).quality["image_auroc"]
            delta = f"{d:+.3f} ({len(m.keys)} datasets)"
        plain = weighted_means(label, found, replace(study, weighted=False)).quality["image_auroc"]
        show = (lambda v: f"{v:.3f}") if m.full else (lambda v: f"({v:.3f})")
        out.append(f"| {label} | {show(m.quality['image_auroc'])} | {show(m.quality['pixel_auroc'])} | "
                   f"{show(m.quality['aupro'])} | {len(m.keys)}/{n_ds} | {delta} | {show(plain)} |")
    out.append("")
    weights = {k: n if study.weighted else 1.0 for k, n in counts.items()}
    for det in PREVIOUS:
        eligible = {k: m for k, m in means.items() if k.startswith(det + "-") and m.full}
        if not eligible:
            continue
        best = max(m.quality["image_auroc"] for m in eligible.values())
        tied = {k: m for k, m in eligible.items() if m.quality["image_auroc"] >= best - TIE}
        pick, why = choose(tied, INCUMBENT[det])
        out.append(f"- rule, {det}: best mean image AUROC {best:.3f}; tied within {TIE}: "
                   f"{', '.join(sorted(tied))}; pick: **{pick}** ({why})")
        for label, m in means.items():
            if not label.startswith(det + "-") or m.full:
                continue
            missing = [k for k in study.datasets if k not in m.keys]
            if not all(k in weights for k in missing):
                continue
            have = sum(weights[k] for k in m.keys)
            need_w = sum(weights[k] for k in missing)
            need = ((best - TIE) * (have + need_w) - m.quality["image_auroc"] * have) / need_w
            names = ", ".join(study.datasets[k] for k in missing)
            verdict = "cannot win" if need > 1.0 else "could still win"
            out.append(f"- {label}: not measured on {names}; would need image AUROC {need:.3f} there to tie: {verdict}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--plan", type=Path, default=Path("leaderboards/defaults-study.toml"))
    ap.add_argument("--study", choices=sorted(STUDIES), default="part3")
    args = ap.parse_args()
    labels = [d["label"] for d in tomllib.loads(args.plan.read_text())["detector"]]
    print(render(labels, collect(args.runs), STUDIES[args.study]))


if __name__ == "__main__":
    main()
