"""Markdown leaderboards from run records.

One table per headline metric (detector x dataset/category, mean over seeds, a mean
column, the best in each column bolded), a cost table and an environment footer.
A missing or failed cell is shown as such and the detector's mean is left blank:
averaging over the cells that happen to exist would flatter whoever failed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iadbench.report.protocol import protocol_line
from iadbench.report.ranks import across_section
from iadbench.report.records import load_runs, shared_labels
from iadbench.report.supervision import sweep_section
from iadbench.report.training import footnote
from iadbench.types import MetricSpec

MISSING = "missing"
FAILED = "failed"
UNDEFINED = "n/a"
VERDICT_BUDGETS = (0.01, 0.05)  # the budgets the verdict table shows recall at (records hold more)


def registered_metrics(specs: Mapping[str, MetricSpec] | None = None) -> Mapping[str, MetricSpec]:
    """``specs`` if given, else the registry's metrics (what every report shows by default)."""
    if specs:
        return specs
    from iadbench.plugins import get_registry

    return get_registry().metrics


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _interval(group: pd.DataFrame, metric: str) -> tuple[float, float] | None:
    """The cells' 95% bootstrap interval of ``metric`` (ends averaged over seeds)."""
    column = f"ci.{metric}"
    if column not in group:
        return None
    ends = [v for v in group[column] if isinstance(v, (list, tuple)) and len(v) == 2 and None not in v]
    if not ends:
        return None
    arr = np.asarray(ends, dtype=float)
    return float(arr[:, 0].mean()), float(arr[:, 1].mean())


def metric_table(frame: pd.DataFrame, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Detector x column table of ``metric`` as formatted strings.

    Over seeds a cell shows mean ± std; where the cells recorded a bootstrap interval
    it follows in brackets (95%, test images resampled). Bold: the best value, and
    where intervals exist every detector whose interval overlaps the best one's (a
    difference inside that overlap is not shown to be real)."""
    column = f"metrics.{metric}"
    detectors = sorted(frame["detector"].unique())
    columns = sorted(frame["column"].unique())
    values = pd.DataFrame(index=detectors, columns=columns, dtype=float)
    notes = pd.DataFrame(MISSING, index=detectors, columns=columns, dtype=object)
    intervals: dict[tuple[str, str], tuple[float, float]] = {}
    for (det, col), group in frame.groupby(["detector", "column"]):
        ok = group[group["status"] == "ok"]
        if ok.empty:
            notes.loc[det, col] = FAILED
            continue
        vals = pd.to_numeric(ok.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
        if vals.empty:
            notes.loc[det, col] = UNDEFINED
            continue
        values.loc[det, col] = vals.mean()
        notes.loc[det, col] = f"{_fmt(vals.mean())} ± {_fmt(vals.std(ddof=1))}" if len(vals) > 1 else _fmt(vals.mean())
        interval = _interval(ok, metric)
        if interval is not None:
            intervals[(det, col)] = interval
            notes.loc[det, col] += f" [{_fmt(interval[0], 2)}, {_fmt(interval[1], 2)}]"

    complete = values.notna().all(axis=1)
    values["mean"] = values.mean(axis=1).where(complete)
    notes["mean"] = [(_fmt(v) if not math.isnan(v) else "") for v in values["mean"]]

    for col in values.columns:
        series = values[col].dropna()
        if series.empty:
            continue
        best = series.max() if higher_is_better else series.min()
        leaders = series.index[np.isclose(series, best, rtol=0, atol=5e-4)]
        bold = set(leaders)
        best_iv = [intervals[(d, col)] for d in leaders if (d, col) in intervals]
        if best_iv:
            lo, hi = min(iv[0] for iv in best_iv), max(iv[1] for iv in best_iv)
            bold |= {d for d in series.index if (d, col) in intervals
                     and intervals[(d, col)][0] <= hi and intervals[(d, col)][1] >= lo}
        for det in bold:
            notes.loc[det, col] = f"**{notes.loc[det, col]}**"
    notes.index.name = "detector"
    return notes


def _cache_word(hits: float) -> str:
    return "–" if math.isnan(hits) else ("warm" if hits > 0 else "cold")


def cost_table(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame["status"] == "ok"]
    rows = []
    for det, group in ok.groupby("detector"):
        def mean(name: str, group=group) -> float:
            col = f"cost.{name}"
            if col not in group:
                return float("nan")
            return float(pd.to_numeric(group[col], errors="coerce").mean())

        latency, backbone = mean("latency_ms_p50"), mean("backbone_latency_ms_p50")
        share = backbone / latency if latency and not math.isnan(backbone) else float("nan")
        # records before `run --runtime` existed were all measured eager
        runtimes = group["cost.runtime"].fillna("eager") if "cost.runtime" in group else pd.Series(["eager"])
        rows.append(
            {
                "detector": det,
                "cells": len(group),
                "runtime": "+".join(sorted(set(runtimes))),
                "fit s": mean("fit_s"),
                "fit cache": _cache_word(mean("fit_feature_cache_hits")),
                "ms/image p50": latency,
                "ms/image p95": mean("latency_ms_p95"),
                "backbone ms p50": backbone,
                "backbone share": share,
                "images/s": mean("throughput_ips"),
                "peak MB": mean("peak_rss_mb"),
                "artifact MB": mean("artifact_mb"),
            }
        )
    table = pd.DataFrame(rows).set_index("detector") if rows else pd.DataFrame()
    fmt = {
        "fit s": "{:.1f}", "ms/image p50": "{:.1f}", "ms/image p95": "{:.1f}",
        "backbone ms p50": "{:.1f}", "backbone share": "{:.0%}", "images/s": "{:.1f}",
        "peak MB": "{:.0f}", "artifact MB": "{:.1f}",
    }
    for col, pattern in fmt.items():
        if col in table:
            table[col] = [("–" if (v is None or math.isnan(v)) else pattern.format(v)) for v in table[col]]
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def _rate(entry: dict[str, Any] | None, pct: bool, interval: bool) -> str:
    """A rate from a record's verdicts ({value, low, high, k, n}) as text."""
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "–"
    show = _pct if pct else (lambda v: _fmt(v, 2))
    text = show(entry["value"])
    if interval and entry.get("low") is not None:
        text += f" [{show(entry['low'])}, {show(entry['high'])}]"
    return text


def verdict_table(frame: pd.DataFrame, specs: Mapping[str, MetricSpec] | None = None) -> pd.DataFrame:
    """Per detector and column: how the threshold was calibrated, the false-alarm rate it
    achieved on good test images against its target, its recall, and recall at fixed
    false-alarm budgets whose thresholds come from the calibration scores. Averaged over
    seeds; intervals (95%, Clopper-Pearson) shown for single-seed cells. Last, each
    metric beside its oracle bound (``MetricSpec.oracle_of``), e.g. ``F1 / F1-max``."""
    pairs = _oracle_pairs(registered_metrics(specs))
    ok = frame[(frame["status"] == "ok") & frame.get("verdicts", pd.Series(None, index=frame.index)).map(
        lambda v: isinstance(v, dict))]
    rows = []
    for (det, col), group in ok.groupby(["detector", "column"]):
        single = len(group) == 1

        def mean_rate(path: tuple[str, ...], group=group, single=single) -> dict[str, Any] | None:
            entries = []
            for v in group["verdicts"]:
                for part in path:
                    v = v.get(part) if isinstance(v, dict) else None
                entries.append(v)
            if single:
                return entries[0]
            values = [e["value"] for e in entries if isinstance(e, dict) and e.get("value") is not None]
            return {"value": float(np.mean(values))} if values else None

        first = group.iloc[0]
        cal = first.get("calibration") or {}
        target = first["verdicts"].get("target_fpr")
        achieved = _rate(mean_rate(("fpr",)), True, single)

        def mean(name: str, group=group) -> str:
            value = pd.to_numeric(group.get(f"metrics.{name}", pd.Series(dtype=float)), errors="coerce").mean()
            return "–" if math.isnan(value) else _fmt(value, 2)

        rows.append({
            "detector": det,
            "column": col,
            "threshold": f"`{first.get('threshold_rule')}`",
            "calibration": f"{cal.get('method', '?')}, {cal.get('images', '?')} images" if cal else "–",
            "FPR achieved / target": f"{achieved} / {_pct(target)}" if target is not None else achieved,
            "recall": _rate(mean_rate(("recall",)), False, single),
            **{f"recall @{budget:.0%}": _rate(mean_rate(("budgets", f"{budget:g}", "recall")), False, False)
               + f" ({_rate(mean_rate(('budgets', f'{budget:g}', 'fpr')), True, False)})"
               for budget in VERDICT_BUDGETS},
            **{f"{metric.column} / {oracle.column}": f"{mean(metric.name)} / {mean(oracle.name)}"
               for metric, oracle in pairs},
        })
    return pd.DataFrame(rows)


def _oracle_pairs(specs: Mapping[str, MetricSpec]) -> list[tuple[MetricSpec, MetricSpec]]:
    """(metric, its oracle bound) for every registered oracle whose metric is registered."""
    return [(specs[s.oracle_of], s) for s in specs.values() if s.oracle_of in specs]


def verdict_section(frame: pd.DataFrame, specs: Mapping[str, MetricSpec] | None = None) -> list[str]:
    specs = registered_metrics(specs)
    table = verdict_table(frame, specs)
    if table.empty:
        return []
    oracles = "".join(f" {oracle.column} chooses its threshold on the test labels: an oracle bound, not a verdict."
                      for _, oracle in _oracle_pairs(specs))
    return ["", "## Verdicts", "",
            "_What the threshold does on the line. `FPR achieved / target`: share of good test images flagged "
            "against the rule's target, 95% Clopper-Pearson interval in brackets; `recall`: share of defective "
            "test images flagged. `recall @N%`: at the threshold calibrated for N% false alarms on the good "
            "training images' calibration scores (never the test set), with the false-alarm rate that threshold "
            "achieved on the test set in parentheses. `calibration`: how the good training images were scored "
            "(leave-one-out or self-excluded bank: every image, by a model that did not fit it; holdout: a share "
            f"kept out of fit).{oracles}_",
            "", table.to_markdown(index=False)]


def _environment_footer(infos: list[dict[str, Any]]) -> str:
    lines = ["## Environment", ""]
    for info in infos:
        env = info.get("environment", {})
        pk = env.get("packages", {})
        settings = info.get("plan", {}).get("settings", {})
        versions = ", ".join(f"{k} {v}" for k, v in pk.items() if v)
        gpus = f", cells on {env.get('device')} ({', '.join(env['gpus'])})" if env.get("gpus") else ""
        lines.append(
            f"- run `{info.get('run_id')}`: {env.get('cpu')} ({env.get('cpu_count')} cores{gpus}, "
            f"{env.get('workers')} worker(s) x {env.get('torch_threads_per_cell')} torch threads), "
            f"Python {env.get('python')}, git {env.get('git_sha') or 'unknown'}; {versions}. "
            f"Feature cache {env.get('feature_cache', 'on')}. "
            + (f"Threshold rule `{settings.get('threshold_rule')}` on {settings.get('holdout_fraction')} "
               "of the good training images held out from fit." if "calibration" not in settings else
               f"Threshold rule `{settings.get('threshold_rule')}` on calibration scores ({settings.get('calibration')}: "
               f"out of fold where the detector has it, else {settings.get('holdout_fraction')} of the good training "
               "images held out from fit).")
        )
    return "\n".join(lines)


def defect_sections(frame: pd.DataFrame) -> list[str]:
    """Per dataset, a folded table of AUROC / recall per defect type (from scores.csv)."""
    from iadbench.report.breakdown import dataset_breakdown

    parts = []
    for dataset in sorted(frame["dataset"].unique()):
        table = dataset_breakdown(frame, dataset)
        if table.empty:
            continue
        parts += ["", f"<details><summary>{dataset}: per defect type</summary>", "", table.to_markdown(index=False), "",
                  "</details>"]
    if parts:
        parts = ["", "## Per defect type", "",
                 "_Image AUROC of each defect type against the good test images / recall at the held-out "
                 "threshold, mean over seeds._", *parts]
    return parts


def render(run_dirs: list[Path], metrics: dict[str, MetricSpec] | None = None, title: str = "Leaderboard",
           report_link: str | None = None, latest: bool = False) -> str:
    frame, infos = load_runs(run_dirs, latest=latest)
    specs = registered_metrics(metrics)
    headline = [n for n, s in specs.items() if s.headline]
    parts = [f"# {title}", ""]
    n_failed = int((frame["status"] != "ok").sum())
    parts.append(
        f"{frame['key'].nunique()} cells from {len(infos)} run(s); {n_failed} failed. "
        f"Cells marked `{MISSING}` were not run, `{FAILED}` failed, `{UNDEFINED}` had an undefined metric; "
        "a detector's mean is left blank unless every column has a value. Best per column in bold; where cells "
        "recorded a 95% bootstrap interval (in brackets: test images resampled, stratified by label, 1,000 times) "
        "every detector whose interval overlaps the best one's is bold too."
    )
    if report_link:
        parts += ["", f"Visual report (curves, heatmaps, worst cases): [{report_link}]({report_link})"]
    dropped = Counter((r["detector_name"], r["detector_version"], r["run"]) for r in frame.attrs.get("superseded") or [])
    if dropped:
        parts += ["", "Superseded setups left out (`--latest`: only each detector's newest version is shown): " + "; ".join(
            f"`{name}` version {version} from {run} ({n} cell{'s' if n > 1 else ''})"
            for (name, version, run), n in sorted(dropped.items())) + "."]
    rows = frame.to_dict("records")
    parts += ["", protocol_line(rows)]
    capped_note = footnote(rows)
    if capped_note:
        parts += ["", capped_note]
    shared = shared_labels(frame)
    if shared:
        example = frame.loc[frame["label"] == shared[0], "detector"].iloc[0]
        parts += ["", (
            f"**Same label, different setups:** {', '.join(f'`{x}`' for x in shared)} stand(s) for detectors "
            "whose parameters or version differ between the merged runs; each setup is its own row, named "
            f"with a hash of its identity (e.g. `{example}`). See Detectors."
        )]
    for name in headline:
        spec = specs.get(name)
        parts += ["", f"## {name}", ""]
        if spec is not None and spec.description:
            parts += [f"_{spec.description}_", ""]
        table = metric_table(frame, name, spec.higher_is_better if spec else True)
        parts.append(table.to_markdown())
    parts += across_section(frame, specs)
    parts += verdict_section(frame, specs)
    parts += sweep_section(frame, specs)
    parts += defect_sections(frame)
    parts += ["", "## Cost", "", "_Measured in each cell's own process: batch-1 latency after warm-up, "
              "throughput at batch 16, peak resident memory of the whole cell; latency and throughput with "
              "the feature cache off. `fit cache: warm` means fit read backbone features an earlier cell of "
              "the grid had computed, so its fit time leaves out the backbone's forward pass._", ""]
    costs = cost_table(frame)
    parts.append(costs.to_markdown() if not costs.empty else "no successful cell")
    parts += ["", "## Detectors", "", "_Resolved parameters of each row (defaults plus overrides)._", ""]
    for det, group in frame.groupby("detector"):
        params = group["params"].iloc[0] or {}
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items()))
        first = group.iloc[0]
        which = f"{first['detector_name']} version {first['detector_version']}; " if first["label"] in shared else ""
        parts.append(f"- `{det}`: {which}{shown or 'no parameters'}")
    failed = frame[frame["status"] != "ok"]
    if not failed.empty:
        parts += ["", "## Failed cells", ""]
        for _, row in failed.iterrows():
            parts.append(f"- {row['detector']} on {row['column']} (seed {row['seed']}): {row['error']}")
    parts += ["", _environment_footer(infos), ""]
    return "\n".join(parts)


def write(run_dirs: list[Path], out: Path, metrics: dict[str, MetricSpec] | None = None, title: str = "Leaderboard",
          report: Path | None = None, latest: bool = False) -> Path:
    """Write the leaderboard to ``out``; it links to ``report`` (an HTML report) when
    given, else to a run's own ``report.html`` when exactly one run has one."""
    import os

    if report is None:
        found = [Path(d) / "report.html" for d in run_dirs if (Path(d) / "report.html").is_file()]
        report = found[0] if len(found) == 1 else None
    link = Path(os.path.relpath(report, out.parent)).as_posix() if report is not None else None
    text = render(run_dirs, metrics, title, link, latest=latest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out
