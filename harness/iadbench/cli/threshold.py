"""``adbench threshold MODEL``: show what each false-alarm budget costs a fitted model,
or re-decide its threshold from the calibration scores it keeps, without refitting."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import typer

from iadbench.cli.app import app, console
from iadbench.errors import InputError

#: Budgets listed when no rule is given.
SHOWN_BUDGETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


@app.command()
def threshold(
    model: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run cell's model/)."),
    fpr: float | None = typer.Option(None, "--fpr", help="Target false-alarm rate on good parts, e.g. 0.005; writes the new threshold."),
    rule: str | None = typer.Option(None, "--rule", help="Any threshold rule instead (fpr:R, quantile:Q, sigma:K, max); writes it."),
) -> None:
    """Without --fpr or --rule: list what each false-alarm budget would cost. With one:
    write the new threshold (and the overlays' pixel threshold) into the model folder;
    predict and serve use it from then on. Scores and maps do not change."""
    import numpy as np

    from iadbench.calibration.rules import calibrate, parse_rule
    from iadbench.calibration.tail import rate_above
    from iadbench.model import read_model_json, write_model_json

    if fpr is not None and rule is not None:
        raise InputError("give --fpr or --rule, not both")
    chosen = parse_rule(rule if rule is not None else f"fpr:{fpr!r}") if (rule is not None or fpr is not None) else None
    body = read_model_json(model)
    cal = body.get("calibration") if isinstance(body.get("calibration"), dict) else None
    scores = np.asarray((cal or {}).get("scores") or [], dtype=np.float64)
    if scores.size == 0:
        raise InputError("model folder keeps no calibration scores (written before they were kept, or fitted on too few "
                         "good images); refit it with `adbench fit` to re-decide its threshold", model)
    test = _run_test_scores(model, body)
    where = f"{scores.size} good training images scored {cal.get('method', '?')}"

    if chosen is None:
        console.print(f"{model}: threshold {body.get('threshold')} ({body.get('threshold_rule')}), calibrated on {where}")
        from rich.table import Table

        table = Table("budget", "threshold", "90% interval", "method", *(["test FPR", "test recall"] if test else []))
        for budget in SHOWN_BUDGETS:
            est = calibrate(scores, f"fpr:{budget}")
            row = [f"{budget:.1%}", f"{est.value:.6g}", _interval(est.low, est.high), est.method]
            if test:
                row += list(_test_rates(test, est.value))
            table.add_row(*row)
        console.print(table)
        if test:
            console.print("test FPR / recall: measured on the run's test set, for looking only (a threshold is never chosen there)")
        return

    estimate = calibrate(scores, chosen)
    maxima = np.asarray(cal.get("map_maxima") or [], dtype=np.float64)
    pixel = calibrate(maxima, chosen).value if maxima.size else None
    expected = rate_above(scores, estimate.value)
    history = list(body.get("threshold_history") or [])
    history.append({"rule": body.get("threshold_rule"), "value": body.get("threshold"), "replaced": time.time()})
    body.update({
        "threshold": estimate.value if math.isfinite(estimate.value) else None,
        "threshold_rule": str(chosen),
        "pixel_threshold": pixel,
        "threshold_history": history,
    })
    body["calibration"] = {**cal, "estimate": estimate.to_dict()}
    write_model_json(Path(model), body)
    console.print(f"{model}: threshold {estimate.value:.6g} ({chosen}, {estimate.method}) on {where}")
    console.print(f"expected false-alarm rate on good parts: {expected.value:.2%} (90% interval {_interval(expected.low, expected.high, pct=True)})")
    if estimate.note:
        console.print(f"note: {estimate.note}")
    if test:
        fpr_text, recall_text = _test_rates(test, estimate.value)
        console.print(f"on the run's test set: false alarms {fpr_text}, recall {recall_text}")


def _interval(low: float, high: float, pct: bool = False) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"{low:.2%} .. {high:.2%}" if pct else f"{low:.6g} .. {high:.6g}"


def _run_test_scores(model: Path, body: dict) -> list[tuple[int, float]] | None:
    """(label, score) of the test images of the run cell this model came from, if it did."""
    info = body.get("info") or {}
    cell_dir = Path(model).resolve().parent
    path = cell_dir / "scores.csv"
    if not info.get("cell_key") or cell_dir.name != info.get("cell_key") or not path.is_file():
        return None
    try:
        with path.open(newline="") as f:
            return [(int(r["label"]), float(r["score"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return None


def _test_rates(test: list[tuple[int, float]], value: float) -> tuple[str, str]:
    """Good test images flagged and defective ones caught at ``value``, as k/n."""
    from iadbench.calibration.verdicts import rates_at

    rates = rates_at([y for y, _ in test], [s for _, s in test], value)
    return tuple(f"{r['k']}/{r['n']}" if r["n"] else "-" for r in (rates["fpr"], rates["recall"]))
