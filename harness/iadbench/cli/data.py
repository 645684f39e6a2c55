"""``adbench data check PATH_OR_NAME``: validate a dataset and summarise it.

The first command to run on your own folder. A folder path is read by the registered
dataset whose ``detect`` claims it: with the built-in plugins an MVTec-like tree or a
good/defect folder by ``folder``, a VisA or KSDD2 root by its own plugin; a name is
looked up among the registered datasets. Every image and mask is decoded, so what
passes here loads in a run.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from iadbench.cli.app import console, data_app, err_console
from iadbench.datasets import resolve_dataset
from iadbench.errors import DatasetError, ImageError, InputError, UnknownNameError
from iadbench.types import GOOD, DatasetSpec, Split

#: data check's options, passed to a dataset that takes them (good/defect folders hold out test images)
FOLDER_OPTIONS = ("test_fraction", "seed")


def _looks_like_path(target: str, names: set[str]) -> bool:
    if target in names:
        return os.sep in target or target.startswith(".")
    return os.sep in target or target.startswith((".", "~")) or Path(target).exists()


def _claims(spec: DatasetSpec, path: Path) -> bool:
    try:
        return bool(spec.detect(path))
    except OSError:  # an unreadable folder is nobody's layout
        return False


def reader_of(path: Path, datasets: dict[str, DatasetSpec]) -> DatasetSpec | None:
    """The dataset that reads the folder ``path``: the first whose ``detect`` claims it,
    public benchmarks (with a ``subdir``) asked before datasets of your own folders: a
    benchmark knows its folders by their category names or its own files (an MVTec AD,
    MPDD or BTAD tree is read as itself), and an MVTec-like tree of your own goes to
    ``folder``. A folder nobody claims goes to the first dataset of your own folders, so
    that its parser says what is missing; None without one."""
    ordered = sorted((s for s in datasets.values() if s.detect is not None), key=lambda s: s.subdir is None)
    claimed = next((s for s in ordered if _claims(s, path)), None)
    return claimed or next((s for s in ordered if s.subdir is None), None)


def _open_dataset(target: str, data_root: Path | None, test_fraction: float, seed: int):
    from iadbench.plugins import get_registry

    registry = get_registry()
    if not _looks_like_path(target, set(registry.datasets)):
        return target, resolve_dataset(registry, target, data_root=data_root)
    path = Path(target).expanduser()
    if not path.exists():
        raise DatasetError("folder not found", path)
    if not path.is_dir():
        raise DatasetError("not a folder (data check takes a dataset folder or a dataset name)", path)
    spec = reader_of(path, registry.datasets)
    if spec is None:
        raise DatasetError("no registered dataset reads this folder (none declares a layout it detects)", path)
    console.print(f"{path}: read as '{spec.name}' ({spec.description})", highlight=False, markup=False)
    options = {k: v for k, v in zip(FOLDER_OPTIONS, (test_fraction, seed)) if k in spec.params}
    return spec.name, resolve_dataset(registry, spec.name, path=path, **options)


def _decode_all(split: Split) -> tuple[Counter, dict[str, list[float]], list[str]]:
    """Decode every image and mask: (image sizes, mask coverage by defect, problems)."""
    from iadbench.images import decode_image, decode_mask

    sizes: Counter = Counter()
    coverage: dict[str, list[float]] = {}
    problems: list[str] = []
    for s in split.train + split.train_defective + split.test:
        try:
            img = decode_image(s.path)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        h, w = img.shape[:2]
        sizes[f"{w}x{h}"] += 1
        if s.mask_path is None:
            continue
        try:
            mask = decode_mask(s.mask_path)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        if mask.shape != (h, w):
            problems.append(f"{s.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}")
        elif not mask.any():
            problems.append(f"{s.mask_path}: mask of a defective image is empty")
        coverage.setdefault(s.defect_type, []).append(float(mask.mean()))
    return sizes, coverage, problems


def _summary(split: Split, sizes: Counter, coverage: dict[str, list[float]]) -> Table:
    table = Table(title=f"{split.dataset} / {split.category}", title_justify="left")
    for col in ("split", "type", "images", "masks", "mask coverage (mean, min-max)"):
        table.add_column(col, justify="right" if col in ("images", "masks") else "left")
    table.add_row("train", GOOD, str(len(split.train)), "-", "-")
    if split.train_defective:  # mixed supervision only, never scored
        n = len(split.train_defective)
        table.add_row("train", "defective (labelled)", str(n), str(sum(s.mask_path is not None for s in split.train_defective)), "-")
    by_type: dict[str, list] = {}
    for s in split.test:
        by_type.setdefault(s.defect_type, []).append(s)
    for kind in sorted(by_type, key=lambda k: (k != GOOD, k)):
        samples = by_type[kind]
        n_masks = sum(s.mask_path is not None for s in samples)
        cov = coverage.get(kind)
        cov_text = f"{100 * sum(cov) / len(cov):.2f}%, {100 * min(cov):.2f}-{100 * max(cov):.2f}%" if cov else "-"
        table.add_row("test", kind, str(len(samples)), str(n_masks) if kind != GOOD else "-", cov_text)
    n_bad = sum(s.is_anomalous for s in split.test)
    table.add_row("test", "all", str(len(split.test)), f"{sum(s.mask_path is not None for s in split.test)}", f"{n_bad} defective", end_section=True)
    return table


@data_app.command("check")
def check(
    target: str = typer.Argument(..., metavar="PATH_OR_NAME", help="A dataset folder, or a registered dataset name."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Folder holding mvtec_ad/, visa/, ksdd2/ (default $IADBENCH_DATA_ROOT)."),
    category: str | None = typer.Option(None, "--category", "-c", help="Check only this category."),
    test_fraction: float = typer.Option(0.2, help="good/defect folders: fraction of good images held out for test."),
    seed: int = typer.Option(0, help="good/defect folders: seed of the hold-out rule."),
) -> None:
    """Validate a dataset (decoding every image and mask) and print a summary."""
    name, dataset = _open_dataset(target, data_root, test_fraction, seed)
    categories = dataset.categories()
    if category is not None:
        if category not in categories:
            raise DatasetError(f"dataset '{name}' has no category '{category}' (found: {', '.join(categories)})")
        categories = [category]
    all_problems: list[str] = []
    totals = Counter()
    for cat in categories:
        split = dataset.split(cat)
        sizes, coverage, problems = _decode_all(split)
        console.print(_summary(split, sizes, coverage))
        console.print("image sizes: " + ", ".join(f"{k} ({v})" for k, v in sizes.most_common()), highlight=False)
        for key, value in split.notes.items():
            if key != "warnings":
                console.print(f"note: {key} = {value}", highlight=False)
        for warning in split.notes.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        for problem in problems:
            err_console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
        console.print()
        all_problems += problems
        totals.update(train=len(split.train), test=len(split.test),
                      defective=sum(s.is_anomalous for s in split.test),
                      masks=sum(s.mask_path is not None for s in split.test))
    summary = (f"{name}: {len(categories)} categor{'y' if len(categories) == 1 else 'ies'}, "
               f"{totals['train']} train, {totals['test']} test ({totals['defective']} defective, {totals['masks']} masks)")
    if all_problems:
        err_console.print(f"[red]error:[/red] {summary}; {len(all_problems)} problem(s) found", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    console.print(f"ok: {summary}; no problems found", highlight=False)


def _fetchable_table(fetchable: dict[str, DatasetSpec]) -> Table:
    from iadbench.downloads.get import human_size
    from iadbench.downloads.verify import expected

    table = Table("dataset", "file", "size", "checksum", "how", "licence", title="adbench data get NAME --to DIR", title_justify="left")
    for name, spec in fetchable.items():
        for d in spec.downloads:
            want = expected(d)
            table.add_row(name, d.file or "-", human_size(d.size_bytes).split(" (")[0] if d.size_bytes else "unknown",
                          want[0] if want else "none", "by hand" if d.manual else "direct", d.licence.split(" (")[0] or "-")
    return table


@data_app.command("get")
def get(
    name: str | None = typer.Argument(None, metavar="[NAME]", help="Dataset to fetch (none: list what can be fetched)."),
    to: Path | None = typer.Option(None, "--to", envvar="IADBENCH_DATA_ROOT", help="Data root to put it in: NAME goes to DIR/<sub-folder>, the folder --data-root DIR reads."),
    list_: bool = typer.Option(False, "--list", help="List the datasets data get knows: file, size, checksum, licence."),
    force: bool = typer.Option(False, "--force", help="Fetch and extract again even where the data is in place."),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the archive after extracting it (default: removed)."),
) -> None:
    """Download a public dataset: show its source, size, checksum and licence, fetch it
    (resuming a .part file), verify the checksum, extract it safely under DIR.

    Set IADBENCH_DOWNLOAD_MIRROR=http://HOST (or http://HOST/PATH) to fetch from a mirror instead of
    the official host (the URL's path is kept)."""
    from iadbench.downloads import DownloadError
    from iadbench.downloads.get import data_folder, get_dataset, located
    from iadbench.plugins import get_registry

    fetchable = {n: s for n, s in sorted(get_registry().datasets.items()) if s.downloads}
    if list_ or name is None:
        console.print(_fetchable_table(fetchable))
        return
    if name not in fetchable:
        raise UnknownNameError(f"no dataset '{name}' to fetch (data get knows: {', '.join(fetchable) or 'none'})")
    if to is None:
        raise InputError("data get needs --to DIR (the data root; or set IADBENCH_DATA_ROOT)")
    spec = fetchable[name]
    to = to.expanduser()
    try:
        folder = get_dataset(spec, to, console, force=force, keep_archive=keep_archive)
    except (DownloadError, OSError) as exc:  # OSError: a full disk, a --to that is a file
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    root = located(spec, folder)
    if root == folder:
        console.print(f"ready: {folder}\nuse it: adbench run --dataset {name} --data-root {to}", highlight=False, soft_wrap=True)
    elif root is not None:
        console.print(f"ready: {root}\nuse it: adbench run --dataset {name} --dataset-path {name}={root}", highlight=False, soft_wrap=True)
    else:
        console.print(f"[yellow]warning:[/yellow] {data_folder(spec, to)} does not look like {name}'s layout; "
                      f"`adbench data check {folder}` says what is missing", highlight=False, soft_wrap=True)
