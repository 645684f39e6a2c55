"""Reading records from one or more run folders into a flat table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from iadbench.errors import InputError
from iadbench.runner.store import RunStore

ID_COLUMNS = ["detector", "dataset", "category", "seed"]


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Latest record per cell key over all runs (an ok record wins over failures),
    flattened to columns ``metrics.X`` and ``cost.X``; plus each run's run.json."""
    infos, rows = [], {}
    for run_dir in run_dirs:
        store = RunStore(Path(run_dir))
        infos.append(store.run_info())
        for key, rec in store.latest_records().items():
            if key in rows and rows[key].get("status") == "ok" and rec.get("status") != "ok":
                continue
            rows[key] = rec
    if not rows:
        raise InputError("no records in " + ", ".join(str(p) for p in run_dirs))
    flat = []
    for rec in rows.values():
        row = {k: rec.get(k) for k in ["key", *ID_COLUMNS, "status", "error"]}
        for group in ("metrics", "cost"):
            for name, value in (rec.get(group) or {}).items():
                row[f"{group}.{name}"] = value
        row["params"] = rec.get("params")
        flat.append(row)
    frame = pd.DataFrame(flat)
    frame["column"] = frame["dataset"] + "/" + frame["category"]
    return frame, infos
