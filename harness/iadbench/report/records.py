"""Reading records from one or more run folders into a flat table.

A record's ``detector`` is the plan's label. Two runs may use one label for different
setups (other params, another detector version); rows are therefore keyed by the label
plus a short hash of that identity, and a label that stands for more than one identity
is shown with the hash appended (``padim [3fa2c1]``). The same label and identity from
different runs (seeds, repeats) stays one row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from iadbench.errors import InputError
from iadbench.report.training import CAPPED_MARK, capped
from iadbench.runner.plan import setup_id
from iadbench.runner.store import RunStore

#: What a cell is matched on across runs (``detector`` is the display name built from these).
MATCH_COLUMNS = ["label", "identity", "dataset", "category", "seed"]
ID_COLUMNS = ["detector", "dataset", "category", "seed"]


def identity_hash(record: dict[str, Any]) -> str:
    """Six hex digits of the record's setup (resolved params, detector name, version)."""
    return setup_id(record.get("detector_name"), record.get("detector_version"), record.get("params"))[:6]


def shared_labels(frame: pd.DataFrame) -> list[str]:
    """Labels that stand for more than one identity in ``frame``."""
    counts = frame.groupby("label")["identity"].nunique()
    return sorted(counts.index[counts > 1])


def display_names(frame: pd.DataFrame) -> pd.Series:
    """``label``, or ``label [hash]`` where the label stands for several identities;
    then ``†`` where any cell of that identity had its training capped."""
    shared = set(shared_labels(frame))
    names = [f"{lab} [{ident}]" if lab in shared else lab for lab, ident in zip(frame["label"], frame["identity"])]
    names = pd.Series(names, index=frame.index)
    # "training", or "training A"/"training B" in a comparison
    hit = pd.Series(False, index=frame.index)
    for col in [c for c in frame.columns if c == "training" or str(c).startswith("training ")]:
        hit |= frame[col].map(capped).astype(bool)
    marked = set(names[hit])
    return names.map(lambda n: f"{n} {CAPPED_MARK}" if n in marked else n)


def load_runs(run_dirs: list[Path], latest: bool = False) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Latest record per cell key over all runs (an ok record wins over failures),
    flattened to columns ``metrics.X`` and ``cost.X``; plus each run's run.json.
    ``latest``: keep only each detector's newest version (see ``superseded``); what was
    left out is in ``frame.attrs["superseded"]`` (name, version, category and run of each
    cell: attrs are copied into every frame derived from this one, so they stay small)."""
    infos, rows, run_settings, cell_dirs = [], {}, {}, {}
    for run_dir in run_dirs:
        store = RunStore(Path(run_dir))
        info = store.run_info()
        infos.append(info)
        settings = (info.get("plan") or {}).get("settings") or {}
        for key, rec in store.latest_records().items():
            if key in rows and rows[key].get("status") == "ok" and rec.get("status") != "ok":
                continue
            rows[key] = rec
            run_settings[key] = settings
            cell_dirs[key] = str(Path(run_dir) / "cells" / key)
    if not rows:
        raise InputError("no records in " + ", ".join(str(p) for p in run_dirs))
    flat = []
    for key, rec in rows.items():
        row = {k: rec.get(k) for k in ["key", "dataset", "category", "seed", "status", "error"]}
        row["label"] = rec.get("detector")
        row["identity"] = identity_hash(rec)
        row["detector_name"] = rec.get("detector_name") or rec.get("detector")
        row["detector_version"] = rec.get("detector_version")
        for group in ("metrics", "cost"):
            for name, value in (rec.get(group) or {}).items():
                row[f"{group}.{name}"] = value
        row["params"] = rec.get("params")
        row["input_size"] = rec.get("input_size")
        # records written before settings were copied into them: their run's plan
        row["settings"] = rec.get("settings") or run_settings[key]
        row["training"] = rec.get("training")
        # what the visual report and per-defect tables read: scores.csv, gallery, model
        row["cell_dir"] = cell_dirs[key]
        row["threshold"] = (rec.get("threshold") or {}).get("value")
        row["display_range"] = (rec.get("threshold") or {}).get("display_range")
        row["pixel_threshold"] = (rec.get("threshold") or {}).get("pixel_value")
        row["threshold_rule"] = (rec.get("threshold") or {}).get("rule")
        row["calibration"] = (rec.get("threshold") or {}).get("calibration")
        row["verdicts"] = rec.get("verdicts")
        for name, interval in ((rec.get("intervals") or {}).items()):
            if isinstance(interval, list) and len(interval) == 2:
                row[f"ci.{name}"] = interval
        flat.append(row)
    frame = pd.DataFrame(flat)
    dropped = superseded(frame) if latest else frame.iloc[:0]
    frame = frame.drop(index=dropped.index).reset_index(drop=True)
    frame["detector"] = display_names(frame)
    frame.attrs["superseded"] = [
        {"detector_name": r["detector_name"], "detector_version": str(r["detector_version"]),
         "category": r["category"], "run": str(Path(r["cell_dir"]).parents[1])}
        for r in dropped.to_dict("records")
    ]
    frame["column"] = frame["dataset"] + "/" + frame["category"]
    return frame, infos


def _version_key(version: Any) -> tuple:
    """Versions compare as numbers where they are ("10" after "9"), else as text."""
    text = str(version) if version is not None else ""
    return (0, float(text), "") if text.replace(".", "", 1).isdigit() else (1, 0.0, text)


def superseded(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of detectors at an older version than the newest one in ``frame`` (by
    detector name): merging an old run with a re-run after a version bump would
    otherwise show both setups. Setups at the newest version (other parameters) stay."""
    newest = frame.groupby("detector_name")["detector_version"].transform(lambda v: max(v, key=_version_key))
    return frame[frame["detector_version"].map(_version_key) != newest.map(_version_key)]
