"""The unified setting (``--setting unified``): one model per dataset, fitted on the good
training images of all its categories together and evaluated on each category's test
set, as the multi-class benchmarks (UniAD, ADer, Dinomaly) report it.

One cell fits the model; it writes one record per category, each with its own key
(``record_key``), and each category's scores and gallery in a folder of its own inside
the cell folder (``category_dir``), so an executor that moves a cell folder whole moves
them too.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.results.identity import stable_key
from iadbench.types import Split

#: The cell's category: a unified cell stands for all the categories it lists.
UNIFIED_CATEGORY = "(unified)"


def union_split(dataset: str, splits: dict[str, Split]) -> Split:
    """The categories' good training images as one training split (in category order);
    no test images: each category is scored on its own test set."""
    train = [sample for split in splits.values() for sample in split.train]
    return Split(dataset=dataset, category=UNIFIED_CATEGORY, train=train, test=[],
                 notes={"setting": "unified", "categories": list(splits)})


def record_key(cell_key: str, category: str) -> str:
    """The key of one category's record of a unified cell."""
    return stable_key({"unified_cell": cell_key, "category": category})


def category_dir(cell_dir: Path, category: str) -> Path:
    """Where one category's scores, calibration scores and gallery lie in a unified cell."""
    return Path(cell_dir) / "categories" / category
