"""``adbench fit``: fit one detector on one category, as a grid cell would, and write a
model folder (iadbench.model) that ``adbench predict`` (and export/serve) can use."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from iadbench.cli.app import app, console
from iadbench.errors import InputError
from iadbench.plugins import get_registry


@app.command()
def fit(
    detector: str = typer.Argument(..., help="Detector name (see `adbench list detectors`)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name (default: factory)."),
    category: str = typer.Option(..., "--category", "-c", help="Category to fit on."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (must not exist or be empty)."),
    seed: int = typer.Option(0, "--seed", help="Seed (the holdout split and the detector's RNGs)."),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="IADBENCH_DATA_ROOT", help="Folder holding mvtec_ad/, visa/, ksdd2/ ..."),
    dataset_path: list[str] = typer.Option([], "--dataset-path", help="Explicit dataset folder, NAME=PATH."),
    set_: list[str] = typer.Option([], "--set", help="Detector parameter, DETECTOR.KEY=VALUE (repeatable)."),
    threshold: str | None = typer.Option(None, "--threshold", help="Threshold rule on good images' calibration scores (default fpr:0.005)."),
    holdout: float | None = typer.Option(None, "--holdout", help="Fraction of good training images held out where the detector has no out-of-fold scores (default 0.1)."),
    calibration: str | None = typer.Option(None, "--calibration", help="auto (default: out-of-fold where the detector has it) or holdout."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (default: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N. The model folder loads on any device."),
) -> None:
    """Fit once, as a run's cell does (same seeding, holdout and threshold rule), and
    write a self-contained model folder."""
    import os

    import torch

    from iadbench.cli.run import build_plan
    from iadbench.model.fit import fit_model, fit_options, save_model
    from iadbench.runner.plan import expand

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("already exists and is not an empty folder; choose another --out", out)
    registry = get_registry()
    # The plan gives the cell exactly what `adbench run` would (resolved params, checked
    # settings, the cell key); the dataset it lists categories of is the one fitted on.
    plan = build_plan([detector], [dataset] if dataset else [], [category], [seed], False, data_root,
                      dataset_path, set_, threshold, None if holdout is None else holdout, calibration)
    from iadbench.devices import parse_device, torch_device

    plan.device = parse_device(device, "--device")  # resolved by expand, with the plan's other checks
    opened = {}

    def categories_of(entry) -> list[str]:
        opened[entry.name] = _resolve(registry, entry.name, plan.data_root, entry.path, entry.params)
        return list(opened[entry.name].categories())

    (cell,) = expand(plan, registry, categories_of)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    split = opened[cell.dataset].split(cell.category)
    s = cell.settings
    console.print(f"fitting {cell.title} ({len(split.train)} good training images) ...")
    workdir = out.parent / f".{out.name}.work"
    try:
        fitted = fit_model(registry.detector(cell.detector), cell.params, split, seed=cell.seed, threads=threads,
                           workdir=workdir, device=torch_device(cell.device), **fit_options(s))
        save_model(fitted, out, {
            "detector": cell.detector, "params": cell.params, "dataset": cell.dataset,
            "dataset_version": cell.dataset_version, "category": cell.category, "seed": cell.seed,
            "cell_key": cell.key, "settings": s, "source": "adbench fit", "device": torch_device(cell.device),
        })
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    how = (f"{len(fitted.calibration_scores)} good images scored {fitted.calibration}" if fitted.calibration != "holdout"
           else f"{len(fitted.hold_idx)} held-out good images")
    console.print(f"model written to {out}: threshold {fitted.threshold:.6g} ({s['threshold_rule']} on {how}), fit {fitted.fit_s:.1f} s")
    if fitted.threshold_note:
        console.print(f"note: {fitted.threshold_note}")


def _resolve(registry, name, data_root, path, params):
    from iadbench.datasets import resolve_dataset

    return resolve_dataset(
        registry, name, data_root=Path(data_root) if data_root else None,
        path=Path(path) if path else None, **(params or {}),
    )
