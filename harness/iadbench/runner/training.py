"""``--training published``: every trained detector at the training length its method
was published with (``DetectorSpec.published_training``), so no result carries the †
of a capped training; and the estimate that stops it on a CPU unless forced.

The estimate scales what this results folder has recorded: a cell of the same
detector and dataset that fitted for ``fit_s`` seconds at ``used`` of the published
unit takes about ``fit_s * published / used`` at the published length (training time
grows with its length; the fixed costs, a backbone pass, make this an overestimate
for short recorded fits). Without such a record there is no honest number, and the
refusal says how to get one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iadbench.errors import InputError

TRAININGS = ("default", "published")


def check_training(training: str, where: Path | None = None) -> str:
    training = str(training).strip().lower()
    if training not in TRAININGS:
        raise InputError(f"training {training!r} is not one of {', '.join(TRAININGS)}", where)
    return training


def published_params(spec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The params that train ``spec`` at its published length, less what the user set
    explicitly (``overrides`` win). An epochs length also lifts a default step cap
    (``max_steps``), which would otherwise end training first. Empty for a detector
    with no published length (one-pass methods, or none known)."""
    published = spec.published_training
    if not published:
        return {}
    out = {published["param"]: published["value"]}
    if published.get("unit") == "epochs" and "max_steps" in spec.params and published["param"] != "max_steps":
        out["max_steps"] = None
    return {k: v for k, v in out.items() if k not in overrides}


@dataclass
class Estimate:
    detector: str
    cells: int
    seconds: float | None  # None: no record to scale from
    basis: str  # in words, for the message


def estimate_published(cells, registry, results: Path) -> list[Estimate]:
    """Per trained detector of ``cells``, the fitting time of its cells at the published
    length, scaled from the records of earlier runs under ``results`` (run folders)."""
    trained: dict[str, list] = {}
    for cell in cells:
        published = registry.detector(cell.detector).published_training
        if published and cell.params.get(published["param"]) == published["value"]:
            trained.setdefault(cell.detector, []).append(cell)
    if not trained:
        return []
    rates = _recorded_rates(results, set(trained))
    out = []
    for name, group in sorted(trained.items()):
        published = registry.detector(name).published_training
        seconds, based = 0.0, []
        for cell in group:
            rate = rates.get((name, cell.dataset, cell.category)) or rates.get((name, cell.dataset))
            if rate is None:
                seconds = None
                break
            seconds += rate * float(published["value"])
            based.append(rate)
        basis = (f"{published['value']} {published['unit']} at {sum(based) / len(based):.2g} s per {published['unit'][:-1]}, "
                 f"as recorded under {results}") if seconds is not None else (
                 f"no recorded fit of {name} on {group[0].dataset} under {results} to scale from")
        out.append(Estimate(name, len(group), seconds, basis))
    return out


def _recorded_rates(results: Path, names: set[str]) -> dict[tuple, float]:
    """Seconds of fit per unit of training, by (detector, dataset, category) and by
    (detector, dataset), from the ok records under ``results`` that say what they used."""
    from iadbench.results.store import RunStore

    per_cell: dict[tuple, list[float]] = {}
    for records in sorted(Path(results).glob("*/records.jsonl")) if Path(results).is_dir() else []:
        try:
            latest = RunStore(records.parent).latest_records().values()
        except (InputError, OSError):
            continue  # an unreadable run does not stop this one
        for record in latest:
            if not record.ok or record.detector_name not in names or record.training is None:
                continue
            used, fit_s = record.training.used, record.cost.fit_s
            if isinstance(used, (int, float)) and used > 0 and fit_s:
                rate = float(fit_s) / float(used)
                per_cell.setdefault((record.detector_name, record.dataset, record.category), []).append(rate)
                per_cell.setdefault((record.detector_name, record.dataset), []).append(rate)
    return {key: min(rates) for key, rates in per_cell.items()}  # the least loaded run's pace


def refuse_on_cpu(cells, registry, results: Path) -> None:
    """The one-line refusal of a published-length run on the CPU, with its estimate."""
    estimates = estimate_published(cells, registry, results)
    if not estimates:
        return
    known = [e for e in estimates if e.seconds is not None]
    unknown = [e for e in estimates if e.seconds is None]
    parts = [f"{e.detector} x{e.cells}: ~{_duration(e.seconds)} ({e.basis})" for e in known]
    parts += [f"{e.detector} x{e.cells}: unknown ({e.basis}; run it once at its default length for an estimate)"
              for e in unknown]
    total = f"about {_duration(sum(e.seconds for e in known))} of fitting" if known else "an unknown time"
    if unknown and known:
        total += " and more"
    raise InputError(f"--training published on the CPU: {total}; " + "; ".join(parts)
                     + ". Pass --force to run it anyway, or --device cuda on a machine with a GPU")


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
