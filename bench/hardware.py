"""The device check: the same grid on a reference device and on another (a GPU), compared
image by image, and the other device's speed.

    python -m bench.hardware [--device cuda] [--reference cpu] [--out runs/hardware]
        [--dataset factory] [-c bottle] [-d padim -d patchcore ...] [--set KEY=VALUE ...]
        [--published DATASET:CATEGORY ...]

1. Runs one small grid (``adbench run``, a subprocess each, as a user runs it) on
   ``--reference`` and on ``--device``, and compares the cells detector by detector: every
   test image's score (the cells' scores.csv) and the metrics. PaDiM and PatchCore
   (``HELD``) must agree within ``SCORE_RTOL`` of their score scale: their fits are
   closed-form or selections, so a GPU may change only the last bits. Trained detectors
   are reported, not held: their training steps round differently on another device.
2. Prints the device's batch-1 latency, batch throughput, fit time and peak GPU memory
   from its records beside the reference's.
3. ``--published DATASET:CATEGORY``: trains ``--published-detector`` (default
   efficientad; repeatable) at its paper's length (``--training published``) on the
   device, on each DATASET:CATEGORY, for leaderboard rows without the dagger.

The default grid runs on the synthetic factory set, which needs no data on the machine:
a lent GPU machine is reached with the working tree only. Exit 1 where a held detector
differs beyond the bound; the run's own exit status where a grid fails (2: usage, e.g.
--device cuda on a machine without a GPU). Writes ``comparison.json`` under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: Detectors whose scores must match across devices, and how closely (relative to the
#: largest score of the cell, so near-zero scores do not inflate it).
HELD, SCORE_RTOL = ("padim", "patchcore"), 1e-4
#: Metrics printed side by side.
METRICS = ("image_auroc", "pixel_auroc", "aupro", "f1")
COSTS = (("fit_s", "fit s"), ("latency_ms_p50", "ms/image b1"), ("throughput_ips", "images/s"), ("peak_gpu_mb", "peak GPU MB"))


def run_grid(out: Path, name: str, device: str, args: argparse.Namespace, extra: list[str] | None = None) -> Path:
    """``adbench run`` of the grid on ``device`` into out/<name>; its exit status ends the bench."""
    run_dir = out / name
    cmd = [sys.executable, "-m", "iadbench", "run", "--device", device, "--run-dir", str(run_dir),
           "--dataset", args.dataset, "--seed", "0", "--keep-models", "none"]
    for c in args.category:
        cmd += ["-c", c]
    for d in args.detector:
        cmd += ["-d", d]
    for s in args.set:
        cmd += ["--set", s]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    cmd += extra or []
    print("$ " + " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd)
    if done.returncode:
        raise SystemExit(done.returncode)
    return run_dir


def ok_cells(run_dir: Path) -> dict[tuple, dict]:
    """A run's ok cells (iadbench.report.records.load_runs: records migrated to the current
    schema, each with its cell_dir) keyed by MATCH_COLUMNS: the setup, not the device,
    whose cell key a GPU changes. A run without a readable record has none."""
    from iadbench.api import InputError
    from iadbench.report.records import MATCH_COLUMNS, load_runs

    try:
        frame, _ = load_runs([run_dir])
    except InputError as exc:
        print(f"{run_dir}: {exc}")
        return {}
    return {tuple(c[k] for k in MATCH_COLUMNS): c for c in frame[frame["status"] == "ok"].to_dict("records")}


def image_scores(cell: dict) -> dict[str, float]:
    """path -> score of one cell (its scores.csv; empty where it has none)."""
    from iadbench.report.breakdown import read_scores

    frame = read_scores(cell["cell_dir"])
    return {} if frame is None else dict(zip(frame["path"], frame["score"].astype(float)))


def score_difference(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |a - b| over the images both scored, over the largest |a|; inf where the
    two cells scored different images."""
    if set(a) != set(b) or not a:
        return float("inf")
    scale = max(abs(v) for v in a.values()) or 1.0
    return max(abs(a[k] - b[k]) for k in a) / scale


def compare(ref_dir: Path, dev_dir: Path) -> list[dict]:
    """One row per ok cell of the reference run: its scores' difference, metrics and costs on both."""
    ref, dev = ok_cells(ref_dir), ok_cells(dev_dir)
    rows = []
    for key in sorted(ref, key=str):
        r, d = ref[key], dev.get(key)
        row = {"detector": r["label"], "dataset": r["dataset"], "category": r["category"], "seed": r["seed"],
               "held": r["detector_name"] in HELD, "reference": _summary(r), "device": _summary(d) if d else None}
        diff = score_difference(image_scores(r), image_scores(d)) if d else float("inf")
        row["score_rel_diff"] = diff if diff != float("inf") else None  # None: not comparable (JSON has no inf)
        row["ok"] = (not row["held"]) or diff <= SCORE_RTOL
        rows.append(row)
    return rows


def _summary(cell: dict) -> dict:
    return {"device": cell["device"], "device_name": cell["device_name"],
            "metrics": {m: _number(cell.get(f"metrics.{m}")) for m in METRICS},
            "cost": {k: _number(cell.get(f"cost.{k}")) for k, _ in COSTS}}


def _number(value) -> float | None:
    """A frame cell as a JSON number: NaN (a metric or cost the record lacks) is None."""
    return None if value is None or value != value else float(value)


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_comparison(rows: list[dict]) -> None:
    if not rows:
        print("no ok cells in the reference run")
        return
    ref_name = rows[0]["reference"]["device_name"]
    dev_name = next((r["device"]["device_name"] for r in rows if r["device"]), "-")
    print(f"\nreference: {ref_name} | device: {dev_name}")
    head = ["detector", "category", "scores rel diff", "held"] + [f"{m} ref / dev" for m in METRICS] + [f"{c} ref / dev" for _, c in COSTS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        ref, dev = r["reference"], r["device"] or {"metrics": {}, "cost": {}}
        cells = [r["detector"], f"{r['dataset']}/{r['category']}", "not comparable" if r["score_rel_diff"] is None else f"{r['score_rel_diff']:.1e}",
                 ("ok" if r["ok"] else f"FAIL (> {SCORE_RTOL:g})") if r["held"] else "reported"]
        cells += [f"{_fmt(ref['metrics'].get(m))} / {_fmt(dev['metrics'].get(m))}" for m in METRICS]
        cells += [f"{_fmt(ref['cost'].get(k), 1)} / {_fmt(dev['cost'].get(k), 1)}" for k, _ in COSTS]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hardware", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="the device checked (default cuda)")
    ap.add_argument("--reference", default="cpu", help="the device it is compared with (default cpu)")
    ap.add_argument("--out", default="runs/hardware", help="folder for the runs and comparison.json (must not hold them yet)")
    ap.add_argument("--dataset", default="factory")
    ap.add_argument("-c", "--category", action="append", default=None, help="default: bottle")
    ap.add_argument("-d", "--detector", action="append", default=None, help="default: padim and patchcore")
    ap.add_argument("--set", action="append", default=[], help="DETECTOR.KEY=VALUE, passed to both runs")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--published", action="append", default=[], metavar="DATASET:CATEGORY",
                    help="then train --published-detector at its published length on the device, on this set")
    ap.add_argument("--published-detector", action="append", default=None, help="default: efficientad")
    args = ap.parse_args(argv)
    args.category = args.category or ["bottle"]
    args.detector = args.detector or list(HELD)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        ap.error(f"--out {out}: already holds files; give a new folder")
    for spec in args.published:
        if spec.count(":") != 1 or not all(spec.split(":")):
            ap.error(f"--published {spec!r}: want DATASET:CATEGORY")
    from iadbench.api import InputError
    from iadbench.devices import resolve_device

    for option, device in (("--device", args.device), ("--reference", args.reference)):
        try:  # before any run: a GPU this machine lacks is a usage error, not a failed grid
            resolve_device(device, option)
        except InputError as exc:
            ap.error(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    ref_dir = run_grid(out, "reference", args.reference, args)
    dev_dir = run_grid(out, "device", args.device, args)
    rows = compare(ref_dir, dev_dir)
    print_comparison(rows)
    report = {"rows": rows, "score_rtol": SCORE_RTOL, "published": []}
    (out / "comparison.json").write_text(json.dumps(report, indent=2))  # kept whatever the published runs do
    missing = [r for r in rows if r["device"] is None]
    if missing:
        print(f"{len(missing)} reference cell(s) have no ok cell on {args.device}: " + ", ".join(r["detector"] for r in missing))
    failed = [r for r in rows if not r["ok"]]
    if not rows:
        print("FAIL: the reference run has no ok cell to compare")
    elif failed:
        print(f"FAIL: {', '.join(r['detector'] for r in failed)} scores differ beyond {SCORE_RTOL:g} of their scale")
    else:
        print(f"same records: held detectors within {SCORE_RTOL:g} of their score scale on {args.device}")
    for spec in args.published:
        dataset, category = spec.split(":")
        sub = argparse.Namespace(**{**vars(args), "dataset": dataset, "category": [category], "set": [],
                                    "detector": args.published_detector or ["efficientad"]})
        run_dir = run_grid(out, f"published-{dataset}-{category}", args.device, sub, ["--training", "published"])
        report["published"].append(str(run_dir / "leaderboard.md"))
        (out / "comparison.json").write_text(json.dumps(report, indent=2))
        print(f"published-length leaderboard: {run_dir / 'leaderboard.md'}")
    return 1 if failed or not rows else 0

if __name__ == "__main__":
    raise SystemExit(main())
