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
from iadbench.results.identity import row_label, setup_id
from iadbench.results.record import CellRecord
from iadbench.results.store import RunStore

#: What a cell is matched on across runs (``detector`` is the display name built from these).
MATCH_COLUMNS = ["label", "identity", "dataset", "category", "seed"]
ID_COLUMNS = ["detector", "dataset", "category", "seed"]


def identity_hash(record: CellRecord) -> str:
    """Six hex digits of the record's setup (resolved params, detector name, version)."""
    return setup_id(record.detector_name, record.detector_version, record.params)[:6]


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


def record_row_label(record: CellRecord) -> str:
    """A record's row in tables (iadbench.results.identity.row_label)."""
    sup = record.supervision
    return row_label(record.detector, sup.k if sup and sup.learns else None, record.setting == "unified")


def _files_dir(run_dir: Path, record: CellRecord) -> Path:
    """Where a record's scores, calibration scores and gallery lie."""
    if record.cell_key:
        from iadbench.model.unified import category_dir

        return category_dir(run_dir / "cells" / record.cell_key, record.category)
    return run_dir / "cells" / record.key


def load_runs(run_dirs: list[Path], latest: bool = False) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Latest record per cell key over all runs (an ok record wins over failures),
    flattened to columns ``metrics.X`` and ``cost.X``; plus each run's run.json.
    ``latest``: keep only each detector's newest version (see ``superseded``); what was
    left out is in ``frame.attrs["superseded"]`` (name, version, category and run of each
    cell: attrs are copied into every frame derived from this one, so they stay small)."""
    infos, rows, cell_dirs = [], {}, {}
    for run_dir in run_dirs:
        store = RunStore(Path(run_dir))
        infos.append(store.run_info())
        for key, rec in store.latest_records().items():  # migrated to the current schema
            if key in rows and rows[key].ok and not rec.ok:
                continue
            rows[key] = rec
            cell_dirs[key] = str(_files_dir(Path(run_dir), rec))
    if not rows:
        raise InputError("no records in " + ", ".join(str(p) for p in run_dirs))
    flat = []
    for key, rec in rows.items():
        row = {"key": rec.key, "dataset": rec.dataset, "category": rec.category, "seed": rec.seed,
               "status": rec.status, "error": rec.error}
        sup = rec.supervision
        row["label"] = record_row_label(rec)
        row["base_label"] = row_label(rec.detector, unified=rec.setting == "unified")
        row["setting"] = rec.setting or "per-category"
        row["defects_k"] = sup.k if sup else None
        row["defects_reserve"] = sup.reserve if sup else 0
        row["defects_learns"] = bool(sup.learns) if sup else False
        row["identity"] = identity_hash(rec)
        row["detector_name"] = rec.detector_name
        row["detector_version"] = rec.detector_version
        row["device"], row["device_name"] = rec.device, rec.device_name
        for name, value in rec.metrics.items():
            row[f"metrics.{name}"] = value
        for name, value in rec.cost.model_dump().items():
            row[f"cost.{name}"] = value
        row["params"] = rec.params
        row["input_size"] = rec.input_size
        row["settings"] = rec.settings
        row["protocol"] = rec.protocol or "default"
        row["training"] = rec.training.model_dump() if rec.training else None
        # what the visual report and per-defect tables read: scores.csv, gallery, model
        row["cell_dir"] = cell_dirs[key]
        threshold = rec.threshold
        row["threshold"] = threshold.value if threshold else None
        row["display_range"] = threshold.display_range if threshold else None
        row["pixel_threshold"] = threshold.pixel_value if threshold else None
        row["threshold_rule"] = threshold.rule if threshold else None
        row["calibration"] = threshold.calibration.model_dump(mode="json", exclude_none=True) \
            if threshold and threshold.calibration else None
        row["verdicts"] = rec.verdicts.model_dump(mode="json") if rec.verdicts else None
        for name, interval in (rec.intervals.bounds() if rec.intervals else {}).items():
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
