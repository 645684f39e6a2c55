"""MVTec LOCO AD: 5 categories with structural and logical anomalies kept apart.

One category folder::

    train/good/*.png                         good training images
    validation/good/*.png                    good held-out images (the protocol's validation set)
    test/good/*.png                          good test images
    test/structural_anomalies/*.png          scratches, dents, contamination
    test/logical_anomalies/*.png             wrong counts, arrangements, combinations
    ground_truth/<kind>/<stem>/000.png, 001.png, ...
                                             one mask per annotated defect region, its pixels
                                             holding that defect type's pixel_value
    defects_config.json                      [{"defect_name", "pixel_value",
                                               "saturation_threshold", "relative_saturation"}]

The path is the LOCO root (the folder holding breakfast_box/, ...) or one category.

``anomalies`` picks the defective test images: ``both`` (default), ``structural`` or
``logical``; the paper reports each kind on its own (good test images plus that kind),
which one run per value gives. ``defect_type`` is the kind's folder name
(``structural_anomalies`` or ``logical_anomalies``), so the per-defect-type breakdown of
a ``both`` run splits the two as well.

Each defective image's regions travel as ``Sample.regions`` (one RegionMask per mask
file, with the category's saturation rows): the image's mask for the pixel metrics is
their union, and the sPRO metric (``auspro``) reads the regions and their saturations.
``mask_path`` is the first region, for the tools that look at one mask.

``validation/good`` stays out of the fit unless ``train_on_validation=true``, as for
MVTec AD 2: the protocol keeps it for choosing thresholds and hyperparameters.
"""

from __future__ import annotations

import json
from pathlib import Path

from iadbench.api import GOOD, DatasetError, DatasetSpec, Download, RegionMask, Sample, Split, hookimpl
from iadbench.layouts import abspath, flag_param, holds_category, list_images, own_categories, probe_all, subfolders

NAME = "mvtec_loco"
CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
KINDS = {"structural": "structural_anomalies", "logical": "logical_anomalies"}
ANOMALIES = ("both", "structural", "logical")
CONFIG = "defects_config.json"
CONFIG_KEYS = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")


def is_category(folder: Path) -> bool:
    """A LOCO category: train/ and test/ beside its defects_config.json (a cheap look)."""
    return (folder / "train").is_dir() and (folder / "test").is_dir() and (folder / CONFIG).is_file()




def read_config(path: Path) -> tuple[tuple[int, float, bool], ...]:
    """defects_config.json as (pixel value, saturation, relative) rows, validated."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read the defects config ({exc})", path) from None
    if not isinstance(entries, list) or not entries:
        raise DatasetError("the defects config must be a non-empty JSON list of defects", path)
    rows, seen = [], {}
    for i, entry in enumerate(entries):
        missing = [k for k in CONFIG_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DatasetError(f"defect #{i + 1} lacks {', '.join(missing)}", path)
        name, value, saturation, relative = (entry[k] for k in CONFIG_KEYS)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise DatasetError(f"defect '{name}': pixel_value must be an integer in 1..65535, got {value!r}", path)
        if isinstance(saturation, bool) or not isinstance(saturation, (int, float)) or not saturation > 0:
            raise DatasetError(f"defect '{name}': saturation_threshold must be a positive number, got {saturation!r}",
                               path)
        if not isinstance(relative, bool):
            raise DatasetError(f"defect '{name}': relative_saturation must be true or false, got {relative!r}", path)
        if relative and saturation > 1:
            raise DatasetError(f"defect '{name}': a relative saturation_threshold must be at most 1, got {saturation}",
                               path)
        if value in seen:
            raise DatasetError(f"defects '{seen[value]}' and '{name}' share pixel_value {value}", path)
        seen[value] = name
        rows.append((value, float(saturation), relative))
    return tuple(rows)


class MVTecLOCO:
    def __init__(self, path: Path | None, anomalies: str = "both", train_on_validation: bool = False):
        if path is None:
            raise DatasetError(
                "mvtec_loco: no data folder; pass --data-root DIR (holding mvtec_loco/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        if anomalies not in ANOMALIES:
            raise DatasetError(f"mvtec_loco: anomalies '{anomalies}' is not one of {', '.join(ANOMALIES)}")
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("MVTec LOCO folder not found", self.root)
        self.anomalies = anomalies
        self.train_on_validation = flag_param(train_on_validation, "train_on_validation", "mvtec_loco")
        self._found = own_categories(self.root, is_category)
        if not self._found:
            raise DatasetError(
                f"no MVTec LOCO category here (expected <category>/train/good, <category>/test and "
                f"<category>/{CONFIG})", self.root
            )

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._found]
        return known + sorted(c for c in self._found if c not in CATEGORIES)

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(f"no category '{category}' (found: {', '.join(self.categories())})", self.root)
        folder = self._found[category]
        saturations = read_config(folder / CONFIG)
        train = [Sample(path=p) for p in list_images(folder / "train" / GOOD)]
        validation_dir = folder / "validation" / GOOD
        validation = [Sample(path=p) for p in list_images(validation_dir)] if validation_dir.is_dir() else []
        if self.train_on_validation:
            train += validation
        test = [Sample(path=p) for p in list_images(folder / "test" / GOOD)]
        kinds = list(KINDS.values()) if self.anomalies == "both" else [KINDS[self.anomalies]]
        counts = {}
        for kind in kinds:
            defective = _defect_samples(folder, kind, saturations)
            counts[kind] = len(defective)
            test += defective
        probe_all([s.path for s in train + test])
        notes: dict = {
            "anomalies": self.anomalies,
            "defective_test": counts,
            "validation_good": len(validation),
            "validation": "in the training images" if self.train_on_validation else "held out, not used",
        }
        if category not in CATEGORIES:
            notes["warnings"] = [f"'{category}' is not an MVTec LOCO category"]
        return Split(dataset=NAME, category=category, train=train, test=test, notes=notes)


def _defect_samples(folder: Path, kind: str, saturations) -> list[Sample]:
    """test/<kind>/*.png, each with its region masks from ground_truth/<kind>/<stem>/."""
    from iadbench.images import check_mask_size

    images = list_images(folder / "test" / kind)
    truth = folder / "ground_truth" / kind
    region_dirs = {d.name: d for d in subfolders(truth)} if truth.is_dir() else {}
    samples = []
    for image in images:
        region_dir = region_dirs.pop(image.stem, None)
        if region_dir is None:
            raise DatasetError(f"defect image without its masks (looked for {truth}/{image.stem}/000.png)", image)
        masks = list_images(region_dir)
        for mask in masks:
            check_mask_size(image, mask)
        regions = tuple(RegionMask(path=m, saturations=saturations) for m in masks)
        samples.append(Sample(path=image, label=1, defect_type=kind, mask_path=masks[0], regions=regions))
    if region_dirs:
        orphan = next(iter(region_dirs.values()))
        raise DatasetError(f"masks without their image (no test/{kind}/{orphan.name}.png)", orphan)
    return samples


def holds_mvtec_loco(path: Path) -> bool:
    """A LOCO category (train/, test/ and defects_config.json), or a folder of them."""
    return holds_category(path, is_category)


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=MVTecLOCO,
            subdir="mvtec_loco",
            params={"anomalies": "both", "train_on_validation": False},
            description=(
                "MVTec LOCO AD (5 categories; structural and logical anomalies, per-region masks with "
                "saturation thresholds for sPRO; anomalies=both|structural|logical)"
            ),
            version="1",
            detect=holds_mvtec_loco,
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datasets.image.mvtec_loco)
            downloads=(
                Download(
                    url="https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/"
                    "430647091-1646842701/mvtec_loco_anomaly_detection.tar.xz",
                    sha256="9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="MVTec's terms: https://www.mvtec.com/company/research/datasets/mvtec-loco; if the link "
                    "stops working, get the archive there (a short form) and put it in DIR",
                ),
            ),
        )
    )
