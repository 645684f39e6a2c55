"""Real-IAD: 30 categories of parts, each sample photographed by 5 cameras (C1-C5),
with the split given by one JSON file per category.

The path is the Real-IAD root::

    realiad_jsons/<json_set>/<category>.json   (or <json_set>/<category>.json)
    realiad_1024/<category>/OK/S0001/<category>_0001_OK_C1_<time>.jpg
    realiad_1024/<category>/NG/<defect>/S0002/..._C1_<time>.jpg and ..._mask.png

A JSON file holds "meta" (normal_class, usually "OK") and "train" and "test" lists of
{image_path, anomaly_class, mask_path, category}; image and mask paths are relative
to the category's image folder (or, when they start with the category, to the
resolution folder). The split is the JSON's, exactly: ``json_set`` picks the set
(realiad_jsons, realiad_jsons_sv, realiad_jsons_fuiad_0.1 ...; in the FUIAD sets the
training list holds defective images on purpose, and they stay in ``train`` with their
labels, counted in Split.notes). ``resolution`` picks the image folder (auto: the
first of 1024, 512, 256, raw present) and ``views`` the cameras ("all", or e.g.
"C1,C3"). Every image is scored on its own (per view, not per 5-view sample).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, probe_all, warn_one_class

NAME = "realiad"
CATEGORIES = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint", "mounts", "pcb",
    "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll", "regulator", "rolled_strip_base",
    "sim_card_set", "switch", "tape", "terminalblock", "toothbrush", "toy", "toy_brick", "transistor1",
    "u_block", "usb", "usb_adaptor", "vcpill", "wooden_beads", "woodstick", "zipper",
)  # fmt: skip
RESOLUTIONS = ("1024", "512", "256", "raw")
JSON_HOME = "realiad_jsons"
CAMERA = re.compile(r"(?:^|_)(C\d+)(?:_|$)")


def _views(views: str | list | tuple) -> frozenset[str] | None:
    """None for all cameras, else the set named ("C1,C3" or ["C1", "C3"])."""
    names = views.split(",") if isinstance(views, str) else list(views)
    names = [str(n).strip().upper() for n in names if str(n).strip()]
    if names == ["ALL"]:
        return None
    bad = [n for n in names if not re.fullmatch(r"C\d+", n)]
    if bad or not names:
        raise DatasetError(f"views must be 'all' or cameras like 'C1,C3', got '{views}'")
    return frozenset(names)


class RealIAD:
    def __init__(self, path: Path | None, json_set: str = JSON_HOME, resolution: str = "auto", views: str = "all"):
        if path is None:
            raise DatasetError(
                "realiad: no data folder; pass --data-root DIR (holding realiad/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("Real-IAD folder not found", self.root)
        self.json_set, self.views = str(json_set), _views(views)
        self.json_dir = self._json_dir()
        self.resolution, self.image_root = self._image_root(str(resolution))
        self._files = {p.stem: p for p in sorted(self.json_dir.glob("*.json"))}
        if not self._files:
            raise DatasetError("no <category>.json split files here", self.json_dir)

    def _json_dir(self) -> Path:
        looked = [self.root / JSON_HOME / self.json_set, self.root / self.json_set]
        found = next((d for d in looked if d.is_dir()), None)
        if found is None:
            raise DatasetError(f"JSON split set '{self.json_set}' not found (looked in {looked[0]} and {looked[1]})", self.root)
        return found

    def _image_root(self, resolution: str) -> tuple[str, Path]:
        if resolution == "auto":
            present = [r for r in RESOLUTIONS if (self.root / f"realiad_{r}").is_dir()]
            if not present:
                raise DatasetError(f"no image folder (expected one of {', '.join(f'realiad_{r}' for r in RESOLUTIONS)})", self.root)
            resolution = present[0]
        if resolution not in RESOLUTIONS:
            raise DatasetError(f"resolution must be auto or one of {', '.join(RESOLUTIONS)}, got '{resolution}'")
        folder = self.root / f"realiad_{resolution}"
        if not folder.is_dir():
            raise DatasetError("image folder of the chosen resolution not found", folder)
        return resolution, folder

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._files]
        return known + sorted(c for c in self._files if c not in CATEGORIES)

    def _load(self, category: str) -> dict:
        path = self._files[category]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"malformed JSON ({exc})", path) from None
        if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
            raise DatasetError('malformed split file: expected an object with "train" and "test" lists', path)
        return data

    def _file(self, rel: object, category: str, where: str, json_path: Path, prefix: str) -> Path:
        if not isinstance(rel, str) or not rel:
            raise DatasetError(f"{where}: expected a relative path string, got {rel!r}", json_path)
        parts = PurePosixPath(prefix, rel.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts:
            raise DatasetError(f"{where}: path '{rel}' leaves the dataset folder", json_path)
        candidates = [self.image_root / category / parts, self.image_root / parts]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetError(f"file listed at {where} of {json_path.name} not found", candidates[0])
        return abspath(found)

    def split(self, category: str) -> Split:
        from iadbench.images import check_mask_size

        if category not in self._files:
            raise DatasetError(f"no category '{category}' in {self.json_dir} (found: {', '.join(self.categories())})", self.root)
        json_path = self._files[category]
        data = self._load(category)
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        normal, prefix = str(meta.get("normal_class", "OK")), str(meta.get("prefix") or "")
        lists: dict[str, list[Sample]] = {"train": [], "test": []}
        skipped_views = no_mask = 0
        for part in ("train", "test"):
            for i, entry in enumerate(data[part]):
                where = f"{part}[{i}]"
                if not isinstance(entry, dict) or not isinstance(entry.get("anomaly_class"), str):
                    raise DatasetError(f"{where}: expected an object with image_path and anomaly_class", json_path)
                name = PurePosixPath(str(entry.get("image_path", ""))).stem
                camera = CAMERA.search(name)
                if self.views is not None and (camera is None or camera.group(1) not in self.views):
                    skipped_views += 1
                    continue
                image = self._file(entry.get("image_path"), category, where, json_path, prefix)
                if entry["anomaly_class"] == normal:
                    lists[part].append(Sample(path=image))
                    continue
                mask = None
                if entry.get("mask_path"):
                    mask = self._file(entry["mask_path"], category, f"{where}.mask_path", json_path, prefix)
                    check_mask_size(image, mask)
                else:
                    no_mask += 1
                lists[part].append(Sample(path=image, label=1, defect_type=entry["anomaly_class"], mask_path=mask))
        train, test = lists["train"], lists["test"]
        if not train:
            raise DatasetError(f"empty train split for '{category}' (views {self._views_text()})", json_path)
        if not test:
            raise DatasetError(f"empty test split for '{category}' (views {self._views_text()})", json_path)
        probe_all(s.path for s in train + test)
        notes: dict = {"split_json": str(json_path), "resolution": self.resolution, "views": self._views_text(),
                       "scored": "per image (each camera view on its own)"}
        if skipped_views:
            notes["left_out_other_views"] = skipped_views
        anomalous_train = sum(s.is_anomalous for s in train)
        if anomalous_train:
            notes["train_anomalous"] = anomalous_train  # a FUIAD set: contamination by design
        split = Split(dataset=NAME, category=category, train=train, test=test, notes=notes)
        if no_mask:
            split.notes.setdefault("warnings", []).append(f"{no_mask} defective image(s) listed without a mask")
        return warn_one_class(split)

    def _views_text(self) -> str:
        return "all" if self.views is None else ",".join(sorted(self.views))


def holds_realiad(path: Path) -> bool:
    """A Real-IAD root: its realiad_jsons/ folder or a realiad_<resolution>/ image folder."""
    return (path / JSON_HOME).is_dir() or any((path / f"realiad_{r}").is_dir() for r in RESOLUTIONS)


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=RealIAD,
            subdir="realiad",
            params={"json_set": JSON_HOME, "resolution": "auto", "views": "all"},
            description="Real-IAD (30 categories, 5 camera views; split by realiad_jsons/<set>/<category>.json)",
            version="1",
            detect=holds_realiad,
            # the source and licence as anomalib 2.7 records them (anomalib.data.datamodules.image.realiad)
            downloads=(
                Download(
                    url="https://huggingface.co/datasets/REAL-IAD/Real-IAD",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="gated: ask for access on the page (the authors approve), then "
                    "`huggingface-cli download --repo-type dataset REAL-IAD/Real-IAD --local-dir DIR/realiad` "
                    "and unzip its archives there, so that it holds realiad_jsons/ and realiad_1024/ (or _512, _256)",
                    manual=True,
                ),
            ),
        )
    )
