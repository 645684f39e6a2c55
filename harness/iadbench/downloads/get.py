"""What ``adbench data get NAME --to DIR`` does: describe the files, fetch what is
missing, verify, extract into ``DIR/<subdir>``, and remember it.

A marker file in the dataset's folder records each archive extracted there with its
checksum, so a second call finds everything in place and fetches nothing. A folder
that already holds the dataset (its ``detect`` claims it), put there by hand, counts
as in place too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from iadbench.downloads import DownloadError
from iadbench.downloads.archive import extract
from iadbench.downloads.fetch import Offline, fetch, mirrored
from iadbench.downloads.verify import digests, expected, mismatch
from iadbench.types import DatasetSpec, Download

MARKER = ".adbench-get.json"


def human_size(n: int | None) -> str:
    if n is None:
        return "size not on record"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit} ({n} bytes)"
        size /= 1000
    raise AssertionError("unreachable")


def data_folder(spec: DatasetSpec, to: Path) -> Path:
    """Where NAME's data goes: ``DIR/<subdir>``, the folder ``--data-root DIR`` reads."""
    return to / (spec.subdir or spec.name)


def claims(spec: DatasetSpec, path: Path) -> bool:
    if spec.detect is None or not path.is_dir():
        return False
    try:
        return bool(spec.detect(path))
    except OSError:
        return False


def located(spec: DatasetSpec, folder: Path, depth: int = 2) -> Path | None:
    """The folder at or below ``folder`` (``depth`` levels) that the dataset reads, or None."""
    if claims(spec, folder):
        return folder
    if depth and folder.is_dir():
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found = located(spec, child, depth - 1)
            if found is not None:
                return found
    return None


def _marker(folder: Path) -> dict:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _done(marker: dict, download: Download) -> bool:
    entry = marker.get(download.file or download.url)
    if not isinstance(entry, dict):
        return False
    want = expected(download)
    return want is None or entry.get(want[0]) == want[1]


def describe(spec: DatasetSpec, console: Console, to: Path) -> None:
    """The facts a user checks before a download: source, size, checksum, licence
    (``DIR`` in a note is the target folder)."""
    console.print(f"[bold]{spec.name}[/bold]: {escape(spec.description)}", highlight=False)
    for d in spec.downloads:
        rows = [("source", d.url + ("  (a page: the file is fetched by hand)" if d.manual else ""))]
        if d.file:
            rows.append(("file", f"{d.file}, {human_size(d.size_bytes)}"))
            want = expected(d)
            rows.append(("checksum", f"{want[0]} {want[1]}" if want else "none published (the file is used unverified)"))
        rows.append(("licence", d.licence or "see the source"))
        if d.note:
            rows.append(("note", d.note.replace("DIR", str(to))))
        for key, value in rows:
            console.print(f"  {key:<9} {escape(value)}", highlight=False, soft_wrap=True)


def _download(url: str, target: Path, console: Console) -> Path:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn(target.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal, transient=True,
    )
    task = progress.add_task(target.name, total=None)

    def on_start(total: int | None, have: int) -> None:
        progress.update(task, total=total, completed=have)
        if have:
            console.print(f"resuming {target.name} at {have} bytes", highlight=False)

    with progress:
        part = fetch(url, target, on_start, lambda n: progress.advance(task, n))
    console.print(f"{target.name}: downloaded, verifying", highlight=False)
    return part


def _verified(download: Download, path: Path, final: Path, console: Console) -> str:
    """Check ``path`` (moved to ``final`` once good); returns its SHA-256. A file that
    fails is kept aside as ``<file>.corrupt``, so the next call fetches it afresh."""
    found = digests(path, md5=bool(download.md5 and not download.sha256))
    problem = mismatch(download, path, found)
    if problem is not None:
        corrupt = final.with_name(final.name + ".corrupt")
        os.replace(path, corrupt)
        raise DownloadError(f"{final.name}: {problem}; kept aside as {corrupt}, run again to fetch it afresh")
    want = expected(download)
    if want is None:
        console.print(f"[yellow]warning:[/yellow] {final.name}: no published checksum, not verified (its sha256 is {found['sha256']})", highlight=False)
    else:
        console.print(f"{final.name}: {want[0]} ok", highlight=False)
    if path != final:
        os.replace(path, final)
    return found["sha256"]


def _fetch_one(spec: DatasetSpec, download: Download, to: Path, folder: Path, console: Console) -> Path:
    """The verified archive of ``download`` in ``to``: placed there already, or fetched."""
    name = download.file
    if name is None:
        raise DownloadError(f"{spec.name} is fetched by hand from {download.url} (see the note); put the extracted dataset in {folder}")
    archive = to / name
    if archive.is_file():
        console.print(f"{name}: found in {to}, verifying", highlight=False)
        return archive
    if download.manual:
        raise DownloadError(f"{spec.name}: get {name} by hand from {download.url}; put it at {archive} and run this command again")
    url = mirrored(download.url)
    try:
        return _download(url, archive, console)
    except Offline as exc:
        raise DownloadError(f"{exc}; fetch it by hand, put it at {archive} and run this command again") from None


def get_dataset(spec: DatasetSpec, to: Path, console: Console, force: bool = False, keep_archive: bool = False) -> Path:
    """Put ``spec``'s data in ``DIR/<subdir>``; returns that folder. Raises DownloadError."""
    folder = data_folder(spec, to)
    marker = _marker(folder)
    pending = [d for d in spec.downloads if force or not _done(marker, d)]
    if not pending:
        console.print(f"{spec.name}: already in place in {folder}; nothing downloaded (--force fetches again)", highlight=False)
        return folder
    if not force and not marker and claims(spec, folder):
        console.print(f"{spec.name}: {folder} already holds it (not put there by data get); nothing downloaded (--force fetches and extracts over it)", highlight=False)
        return folder
    describe(spec, console, to)
    to.mkdir(parents=True, exist_ok=True)
    for download in pending:
        fetched = _fetch_one(spec, download, to, folder, console)
        archive = to / download.file  # _fetch_one raised for a download with no file
        sha256 = _verified(download, fetched, archive, console)
        console.print(f"{archive.name}: extracting into {folder}", highlight=False)
        count = extract(archive, folder, download.strip)
        console.print(f"{archive.name}: {count} files extracted", highlight=False)
        marker[download.file] = {"url": download.url, "sha256": sha256, **({"md5": download.md5} if download.md5 else {}), "files": count}
        (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if not keep_archive:
            archive.unlink()
    return folder
