"""MVTec AD 2: 8 categories, each with three test sets, two of them without labels.

One category folder::

    train/good/*.png                      good training images
    validation/good/*.png                 good held-out images (the protocol's validation set)
    test_public/good/*.png                good test images
    test_public/bad/*.png                 defective test images
    test_public/ground_truth/bad/<stem>_mask.png
    test_private/*.png                    the official test set: no labels, no masks
    test_private_mixed/*.png              the same, under seen and unseen lighting mixed

The path is the MVTec AD 2 root (the folder holding can/, fabric/, ...) or one category.

``test_set`` picks what is scored: ``test_public`` (default; labels and masks, every
metric defined, SegF1 the protocol's own) or ``test_private`` / ``test_private_mixed``.
A private set's images are scored like any test set, and their scores and the model are
written, but every metric is recorded undefined with the reason (``Split.notes
["unlabelled_test"]``): the labels live on the evaluation server. Its submission folder
is written from the model with ``adbench data ad2-submission`` (iadbench_mvtec_ad2.submission).

``validation/good`` stays out of the fit by default: the protocol keeps it for choosing
thresholds and hyperparameters, and a detector fitted on more images than the published
ones is not comparable. ``train_on_validation=true`` adds it to the training images (so
the calibration holdout draws from it too); either way Split.notes counts it.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import GOOD, DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, flag_param, holds_category, list_images, own_categories, probe_all

NAME = "mvtec_ad2"
CATEGORIES = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
TEST_SETS = ("test_public", "test_private", "test_private_mixed")
BAD = "bad"
MASK_SUFFIX = "_mask"
UNLABELLED = "unlabelled"  # defect_type of a private test image


def is_category(folder: Path) -> bool:
    """A category: train/ beside one of the test sets (a cheap look at names)."""
    return (folder / "train").is_dir() and any((folder / t).is_dir() for t in TEST_SETS)




class MVTecAD2:
    def __init__(self, path: Path | None, test_set: str = "test_public", train_on_validation: bool = False):
        if path is None:
            raise DatasetError(
                "mvtec_ad2: no data folder; pass --data-root DIR (holding mvtec_ad2/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        if test_set not in TEST_SETS:
            raise DatasetError(f"mvtec_ad2: test_set '{test_set}' is not one of {', '.join(TEST_SETS)}")
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("MVTec AD 2 folder not found", self.root)
        self.test_set = test_set
        self.train_on_validation = flag_param(train_on_validation, "train_on_validation", "mvtec_ad2")
        self._found = own_categories(self.root, is_category)
        if not self._found:
            raise DatasetError(
                "no MVTec AD 2 category here (expected <category>/train/good and <category>/test_public)", self.root
            )

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._found]
        return known + sorted(c for c in self._found if c not in CATEGORIES)

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(f"no category '{category}' (found: {', '.join(self.categories())})", self.root)
        folder = self._found[category]
        train = [Sample(path=p) for p in list_images(folder / "train" / GOOD)]
        validation_dir = folder / "validation" / GOOD
        validation = [Sample(path=p) for p in list_images(validation_dir)] if validation_dir.is_dir() else []
        notes: dict = {
            "test_set": self.test_set,
            "validation_good": len(validation),
            "validation": "in the training images" if self.train_on_validation else "held out, not used",
        }
        if self.train_on_validation:
            train += validation
        test_dir = folder / self.test_set
        if not test_dir.is_dir():
            raise DatasetError(f"no {self.test_set}/ folder (test_set={self.test_set})", folder)
        if self.test_set == "test_public":
            test = _public_test(test_dir)
        else:
            test = [Sample(path=p, defect_type=UNLABELLED) for p in list_images(test_dir)]
            notes["unlabelled_test"] = (
                f"MVTec AD 2 {self.test_set} has no public labels; scores and the model are for the "
                "evaluation server (adbench data ad2-submission)"
            )
        probe_all([s.path for s in train + test])
        if category not in CATEGORIES:
            notes.setdefault("warnings", []).append(f"'{category}' is not an MVTec AD 2 category")
        return Split(dataset=NAME, category=category, train=train, test=test, notes=notes)


def _public_test(test_dir: Path) -> list[Sample]:
    """test_public/: good/ and bad/ with every bad image's mask in ground_truth/bad/."""
    from iadbench.images import check_mask_size

    test = [Sample(path=p) for p in list_images(test_dir / GOOD)]
    bad = list_images(test_dir / BAD)
    mask_dir = test_dir / "ground_truth" / BAD
    masks = {m.stem.removesuffix(MASK_SUFFIX): m for m in list_images(mask_dir)} if mask_dir.is_dir() else {}
    for image in bad:
        mask = masks.pop(image.stem, None)
        if mask is None:
            raise DatasetError(f"defect image without its mask (looked for {mask_dir}/{image.stem}{MASK_SUFFIX}.png)",
                               image)
        check_mask_size(image, mask)
        test.append(Sample(path=image, label=1, defect_type=BAD, mask_path=mask))
    if masks:
        orphan = next(iter(masks.values()))
        raise DatasetError(f"mask without its image (no {BAD}/{orphan.stem.removesuffix(MASK_SUFFIX)}.png)", orphan)
    return test


def holds_mvtec_ad2(path: Path) -> bool:
    """An MVTec AD 2 category (train/ beside test_public/ or a private test set), or a
    folder of them."""
    return holds_category(path, is_category)


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=MVTecAD2,
            subdir="mvtec_ad2",
            params={"test_set": "test_public", "train_on_validation": False},
            description=(
                "MVTec AD 2 (8 categories; train/good, validation/good, test_public with masks; "
                "test_set=test_private|test_private_mixed scores the unlabelled sets for the server)"
            ),
            version="1",
            detect=holds_mvtec_ad2,
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datamodules.image.mvtecad2)
            downloads=(
                Download(
                    url="https://www.mydrive.ch/shares/150997/701c90d3aea6588f404936e32a674602/download/"
                    "466712769-1743429042/mvtec_ad_2.tar.gz",
                    sha256="c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="MVTec's terms: https://www.mvtec.com/company/research/datasets/mvtec-ad-2; if the link "
                    "stops working, get the archive there (a short form) and put it in DIR",
                ),
            ),
        )
    )


@hookimpl
def register_commands(app):
    import typer

    from iadbench.cli import console, group

    def ad2_submission(
        maps_dir: Path = typer.Argument(..., help="Folder of <stem>_map.png maps written by adbench predict MODEL IMAGES --out."),
        out: Path = typer.Option(..., "--out", help="Submission folder (anomaly_images/ and anomaly_images_thresholded/ are written into it)."),
        category: str = typer.Option(..., "--category", "-c", help="The MVTec AD 2 category the maps belong to, e.g. can."),
        test_set: str = typer.Option("test_private", "--test-set", help="test_private or test_private_mixed (or test_public, to check the format locally)."),
        model: Path | None = typer.Option(None, "--model", help="Model folder whose calibrated pixel threshold binarises the maps."),
        pixel_threshold: float | None = typer.Option(None, "--pixel-threshold", help="Binarise at this map value instead of the model's."),
    ) -> None:
        """Write MVTec AD 2's evaluation-server folder (float TIFF maps and 0/255 PNG masks) from adbench predict maps."""
        from iadbench.api import InputError
        from iadbench_mvtec_ad2.submission import model_pixel_threshold, write_submission

        if test_set not in TEST_SETS:
            raise InputError(f"--test-set '{test_set}' is not one of {', '.join(TEST_SETS)}")
        if (model is None) == (pixel_threshold is None):
            raise InputError("give exactly one of --model and --pixel-threshold (what binarises the maps)")
        level = pixel_threshold if pixel_threshold is not None else model_pixel_threshold(model)
        n = write_submission(maps_dir, out, category, test_set, level)
        console.print(f"{n} maps of {category}/{test_set} written to {out} (binarised above {level:.6g})", highlight=False)

    group(app, "data").command("ad2-submission")(ad2_submission)
