"""Folder layouts shared by the dataset plugins, each parsed into a Split.

Two layouts cover the public benchmarks and most users' own data:

MVTec-like (one category)::

    train/good/*.png                 good images only (other train/ folders are left out
                                     and counted in Split.notes)
    test/good/*.png                  good test images
    test/<defect>/*.png              one folder per defect type
    ground_truth/<defect>/<stem>_mask.png   (or <stem>.png; optional for user data)

good/defect (one category, no split of its own)::

    good/*.png                       good images
    <defect>/*.png                   one or more defect folders: scratch/, dent/, defect/
    ground_truth/<defect>/<stem>_mask.png   optional masks (``masks/`` works too)

    A seeded, deterministic hold-out sends ``test_fraction`` of the good images to the
    test split: good images are ordered by sha256("<seed>/<file name>") and the first
    round(test_fraction * n) go to test (at least one, and at least one stays for
    training). An image's place depends only on its own name and the seed, so adding
    images moves at most a few others.

Either layout may also be a parent folder whose sub-folders are categories.
Benchmarks with layouts of their own (a split file, masks beside images) parse them in
their plugins; each DatasetSpec's ``detect`` says which folders it reads.

In every image folder, hidden files and OS litter (.DS_Store, Thumbs.db, desktop.ini,
__MACOSX, ._*) are skipped; any other non-image file is an error, as is an empty
folder, a defect image without its mask (once a dataset has masks), a mask without
its image and a mask whose size differs from its image's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from iadbench.errors import DatasetError
from iadbench.types import GOOD, Sample, Split

LITTER = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir"})
MASK_DIRS = ("ground_truth", "masks")
MASK_SUFFIX = "_mask"

MVTEC = "mvtec"
GOOD_DEFECT = "good_defect"


def abspath(path: str | Path) -> Path:
    """Absolute, with '..' folded, but symlinks kept as the user named them."""
    return Path(os.path.abspath(path))


def is_litter(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.lower() in LITTER


def _natural_key(path: Path) -> list:
    # "2.png" before "10.png", like a file browser.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def visible_entries(folder: Path) -> list[Path]:
    try:
        entries = [p for p in folder.iterdir() if not is_litter(p)]
    except FileNotFoundError:
        raise DatasetError("folder not found", folder) from None
    except NotADirectoryError:
        raise DatasetError("not a folder", folder) from None
    except OSError as exc:
        raise DatasetError(f"cannot list folder ({exc.strerror or exc})", folder) from None
    return sorted(entries, key=_natural_key)


def subfolders(folder: Path) -> list[Path]:
    return [p for p in visible_entries(folder) if p.is_dir()]


def require_dir(folder: Path, what: str) -> Path:
    if not folder.exists():
        raise DatasetError(f"folder not found ({what})", folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder ({what})", folder)
    return folder


#: File name endings taken as images (lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

# iadbench.images (numpy, PIL) is imported where used: dataset plugins import this module
# when they register, on every CLI start, ``adbench --help`` included.


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path, *, allow_empty: bool = False) -> list[Path]:
    """The images in ``folder``, in natural order; litter skipped, anything else an error."""
    require_dir(folder, "image folder")
    images = []
    for entry in visible_entries(folder):
        if entry.is_dir():
            raise DatasetError(
                f"unexpected folder inside an image folder ({folder.name}/ holds images only)", entry
            )
        if not is_image_file(entry):
            raise DatasetError(
                f"not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})", entry
            )
        images.append(abspath(entry))
    if not images and not allow_empty:
        raise DatasetError("empty folder: no images", folder)
    return images


def _mask_index(mask_dir: Path) -> dict[str, Path]:
    """Mask files of one defect folder by the image stem they belong to."""
    index: dict[str, Path] = {}
    for mask in list_images(mask_dir, allow_empty=True):
        stem = mask.stem[: -len(MASK_SUFFIX)] if mask.stem.endswith(MASK_SUFFIX) else mask.stem
        if stem in index:
            raise DatasetError(f"two masks for image '{stem}' (also {index[stem].name})", mask)
        index[stem] = mask
    return index


def _pair_masks(
    images: list[Path], mask_dir: Path | None, defect: str, *, required: bool
) -> list[Sample]:
    """Defect samples for ``images`` with their masks from ``mask_dir``."""
    index = _mask_index(mask_dir) if mask_dir is not None and mask_dir.is_dir() else None
    if index is None and required:
        raise DatasetError(f"defect image without its mask (no mask folder {mask_dir})", images[0])
    from iadbench.images import check_mask_size

    samples = []
    for img in images:
        mask = None
        if index is not None:
            mask = index.pop(img.stem, None)
            if mask is None:
                raise DatasetError(
                    f"defect image without its mask (looked for {mask_dir}/{img.stem}{MASK_SUFFIX}.png)",
                    img,
                )
            check_mask_size(img, mask)
        samples.append(Sample(path=img, label=1, defect_type=defect, mask_path=mask))
    if index:
        orphan = next(iter(index.values()))
        raise DatasetError(f"mask without its image (no {defect}/{orphan.stem.removesuffix(MASK_SUFFIX)}.*)", orphan)
    return samples


def pair_masks(images: list[Path], mask_dir: Path, defect: str) -> list[Sample]:
    """Defect samples of ``images``, each with its mask from ``mask_dir`` named
    ``<stem>_mask.*`` or ``<stem>.*`` in any image format (a benchmark whose masks are
    BMP beside PNG images); a missing mask, an orphan mask or a size mismatch is an error."""
    return _pair_masks(images, mask_dir, defect, required=True)


def probe_all(paths: Iterable[Path]) -> None:
    """Read every file's header: catches zero-byte, non-image and oversized files early
    (a few milliseconds per hundred images); full decoding happens at load time."""
    from iadbench.images import image_size

    for p in paths:
        image_size(p)


def _mask_root(root: Path) -> Path | None:
    found = [root / d for d in MASK_DIRS if (root / d).is_dir()]
    if len(found) > 1:
        raise DatasetError(f"both {MASK_DIRS[0]}/ and {MASK_DIRS[1]}/ exist; keep one", root)
    return found[0] if found else None


def _check_mask_folders(mask_root: Path | None, defects: set[str]) -> None:
    if mask_root is None:
        return
    for folder in subfolders(mask_root):
        if folder.name not in defects and folder.name != GOOD:
            raise DatasetError(f"masks for defect type '{folder.name}' but no images of it", folder)


def parse_mvtec(
    root: Path,
    *,
    dataset: str,
    category: str,
    masks_required: bool = True,
    require_test_good: bool = True,
) -> Split:
    """One MVTec-like category folder -> Split (see the module doc)."""
    root = abspath(require_dir(root, f"category '{category}'"))
    hint = "an MVTec-like category holds train/good, test/<defect>, ground_truth/<defect>"
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DatasetError(f"no {part}/ folder ({hint})", root)
    train_dir = root / "train"
    if not (train_dir / GOOD).is_dir():
        raise DatasetError("no train/good/ folder: the training split has no good images", train_dir)
    train_images = list_images(train_dir / GOOD, allow_empty=True)
    if not train_images:
        raise DatasetError("empty train split: train/good/ has no images", train_dir / GOOD)
    left_out = {}
    for entry in visible_entries(train_dir):
        if entry.is_dir() and entry.name != GOOD:
            left_out[entry.name] = len(list_images(entry, allow_empty=True))
        elif not entry.is_dir():
            raise DatasetError("image directly in train/; put good images in train/good/", entry)
    train = [Sample(path=p) for p in train_images]

    test_dir = root / "test"
    test: list[Sample] = []
    for entry in visible_entries(test_dir):
        if not entry.is_dir():
            raise DatasetError("file directly in test/; put it in test/good/ or test/<defect>/", entry)
    test_folders = subfolders(test_dir)
    if not test_folders:
        raise DatasetError("empty test split: no test/good/ or test/<defect>/ folders", test_dir)
    if require_test_good and not (test_dir / GOOD).is_dir():
        raise DatasetError("no test/good/ folder", test_dir)
    mask_root = root / "ground_truth" if (root / "ground_truth").is_dir() else None
    if mask_root is None and not masks_required:
        mask_root = _mask_root(root)
    defects = {f.name for f in test_folders if f.name != GOOD}
    _check_mask_folders(mask_root, defects)
    for folder in test_folders:
        images = list_images(folder)
        if folder.name == GOOD:
            test += [Sample(path=p) for p in images]
            continue
        mask_dir = (mask_root / folder.name) if mask_root is not None else None
        if mask_dir is None and masks_required:
            mask_dir = root / "ground_truth" / folder.name
        test += _pair_masks(images, mask_dir, folder.name, required=masks_required or mask_root is not None)
    probe_all([s.path for s in train + test])
    notes: dict = {"layout": MVTEC}
    if left_out:
        notes["left_out_train"] = left_out
    return _finish(Split(dataset=dataset, category=category, train=train, test=test, notes=notes))


def holdout_order(names: Iterable[str], seed: int) -> list[str]:
    """Names ordered by sha256("<seed>/<name>"): the hold-out takes a prefix of this."""
    return sorted(names, key=lambda n: hashlib.sha256(f"{seed}/{n}".encode()).hexdigest())


def parse_good_defect(
    root: Path, *, dataset: str, category: str, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """A good/ + <defect>/ folder -> Split, holding good images out by the seeded rule."""
    root = abspath(require_dir(root, f"category '{category}'"))
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    good_dir = root / GOOD
    if not good_dir.is_dir():
        raise DatasetError("no good/ folder (a good/defect layout needs good/ plus one folder per defect type)", root)
    good = list_images(good_dir, allow_empty=True)
    if len(good) < 2:
        raise DatasetError(
            f"need at least 2 good images (one to train on, one to test), found {len(good)}", good_dir
        )
    mask_root = _mask_root(root)
    defect_dirs = [f for f in subfolders(root) if f.name != GOOD and f.name not in MASK_DIRS]
    if not defect_dirs:
        raise DatasetError("no defect folder next to good/ (e.g. defect/ or scratch/)", root)
    for entry in visible_entries(root):
        if not entry.is_dir() and is_image_file(entry):
            raise DatasetError("image directly in the dataset folder; put it in good/ or a defect folder", entry)
    _check_mask_folders(mask_root, {f.name for f in defect_dirs})

    n_test = min(len(good) - 1, max(1, round(test_fraction * len(good))))
    by_name = {p.name: p for p in good}
    held = set(holdout_order(by_name, seed)[:n_test])
    train = [Sample(path=p) for p in good if p.name not in held]
    test = [Sample(path=p) for p in good if p.name in held]
    for folder in defect_dirs:
        images = list_images(folder)
        mask_dir = (mask_root / folder.name) if mask_root is not None else None
        test += _pair_masks(images, mask_dir, folder.name, required=mask_root is not None)
    probe_all([s.path for s in train + test])
    notes = {
        "layout": GOOD_DEFECT,
        "holdout": {
            "rule": "sha256(seed/name) order, first round(test_fraction*n) good images to test",
            "seed": seed,
            "test_fraction": test_fraction,
            "good_total": len(good),
            "good_test": n_test,
        },
    }
    return _finish(Split(dataset=dataset, category=category, train=train, test=test, notes=notes))


def _finish(split: Split) -> Split:
    """Record (not fail on) a test split that has only one class: metrics that need
    both are then reported undefined by the harness."""
    labels = {s.label for s in split.test}
    if labels == {1}:
        split.notes.setdefault("warnings", []).append("test split has no good images")
    elif labels == {0}:
        split.notes.setdefault("warnings", []).append("test split has no defective images")
    return split


def warn_one_class(split: Split) -> Split:
    """The check every parser here ends with, for a benchmark's own parser: a test split
    with one class only is recorded in ``notes["warnings"]``, not failed."""
    return _finish(split)


# --- layout detection -----------------------------------------------------------------


def detect_layout(path: Path) -> str | None:
    """Which of the two layouts the folder itself holds, or None."""
    if not path.is_dir():
        return None
    if (path / "train").is_dir() or (path / "test").is_dir():
        return MVTEC  # a half-made tree too, so its parser can say what is missing
    if (path / GOOD).is_dir():
        return GOOD_DEFECT
    return None


def _has_good_images(folder: Path, layout: str) -> bool:
    if layout != MVTEC:
        return (folder / GOOD).is_dir()
    # Benchmarks with trees of their own are not MVTec-like: MVTec AD 2 has no test/
    # (test_public/ instead), MVTec LOCO keeps each image's masks in a folder of its own.
    return (folder / "train" / GOOD).is_dir() and (folder / "test").is_dir() and not _masks_in_folders(folder)


def _masks_in_folders(folder: Path) -> bool:
    """True when ground_truth/<defect>/ holds a folder per image (MVTec LOCO), not masks;
    the first visible entry of each defect folder decides (a cheap look)."""
    truth = folder / "ground_truth"
    if not truth.is_dir():
        return False
    for defect in os.scandir(truth):
        if defect.is_dir() and not is_litter(Path(defect.name)):
            first = next((e for e in os.scandir(defect.path) if not is_litter(Path(e.name))), None)
            if first is not None:
                return first.is_dir()
    return False


def flag_param(value, name: str, dataset: str) -> bool:
    """A yes/no dataset parameter: a bool, or true/false (yes/no, 1/0) written as text,
    as a CLI or a plan may give it; anything else a DatasetError naming it."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise DatasetError(f"{dataset}: {name} must be true or false, got '{value}'")


def own_categories(root: Path, is_category: Callable[[Path], bool]) -> dict[str, Path]:
    """``root`` as the one category it is, else its sub-folders that are categories
    (``is_category``: a benchmark's own test of its layout), by name."""
    if is_category(root):
        return {root.name: root}
    return {f.name: f for f in subfolders(root) if is_category(f)}


def holds_category(root: Path, is_category: Callable[[Path], bool]) -> bool:
    """True when ``root`` is a category folder (``is_category`` says so: a benchmark's
    own test of its layout), or a folder holding one: a ``detect`` for layouts that are
    not MVTec-like (MVTec AD 2, LOCO, DAGM). Unreadable folders claim nothing."""
    if not root.is_dir():
        return False
    if is_category(root):
        return True
    try:
        return any(is_category(f) for f in subfolders(root))
    except (DatasetError, OSError):
        return False


def holds_layout(root: Path, layouts: tuple[str, ...]) -> bool:
    """True when ``root``, or one of its sub-folders, is a category in one of ``layouts``
    with its good images where the layout keeps them (train/good/ beside test/, or good/): a
    stricter test than find_categories, which also takes half-made trees so that their
    parser can say what is missing. A dataset plugin's ``detect`` for these layouts."""
    if not root.is_dir():
        return False
    own = detect_layout(root)
    if own in layouts:
        return _has_good_images(root, own)
    try:
        folders = subfolders(root)
    except DatasetError:
        return False
    return any((layout := detect_layout(f)) in layouts and _has_good_images(f, layout) for f in folders)


def holds_named_categories(root: Path, names: Iterable[str], layouts: tuple[str, ...] = (MVTEC,)) -> bool:
    """True when ``root`` is a category in one of ``layouts`` (good images in place) whose
    folder name is in ``names``, or holds such categories, at least one, and no other:
    how a benchmark with an MVTec-like layout knows its own folders by their category
    names and leaves a user's MVTec-like tree to the ``folder`` dataset."""
    names = set(names)
    if not root.is_dir():
        return False
    own = detect_layout(root)
    if own in layouts:
        return root.name in names and _has_good_images(root, own)
    try:
        folders = subfolders(root)
    except DatasetError:
        return False
    found = [f.name for f in folders if (layout := detect_layout(f)) in layouts and _has_good_images(f, layout)]
    return bool(found) and all(name in names for name in found)


def find_categories(root: Path, layouts: tuple[str, ...]) -> dict[str, tuple[Path, str]]:
    """Category name -> (folder, layout): ``root`` itself if it is one of ``layouts``,
    else its sub-folders that are."""
    root = abspath(require_dir(root, "dataset folder"))
    own = detect_layout(root)
    if own in layouts:
        return {root.name: (root, own)}
    found = {}
    for folder in subfolders(root):
        layout = detect_layout(folder)
        if layout in layouts:
            found[folder.name] = (folder, layout)
    return found
