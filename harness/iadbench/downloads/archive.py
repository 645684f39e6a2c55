"""Extracting an archive without letting any member out of its folder.

Every member is checked before it is written: an absolute path, a path through ``..``
out of the folder, a link (symbolic or hard) pointing out of it, or a device file
stops the extraction with an error naming the member. Members go to a staging folder
that is moved into place only once the whole archive has passed, so a refused archive
leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from iadbench.downloads import DownloadError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
SUFFIXES = (*TAR_SUFFIXES, ".zip")


def is_archive(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _outside(name: str, dest: Path) -> str | None:
    """Why the member path ``name`` would land outside ``dest``, or None."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    target = os.path.normpath(os.path.join(dest, *pure.parts)) if pure.parts else str(dest)
    if os.path.commonpath([target, str(dest)]) != str(dest):
        return "path leaves the folder"
    return None


def _refuse(archive: Path, member: str, why: str) -> DownloadError:
    return DownloadError(f"{archive.name}: refused member '{member}' ({why}); nothing extracted")


def _extract_tar(archive: Path, dest: Path) -> None:
    # Stream mode reads the archive once, member by member, each checked before it is written.
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            why = _outside(member.name, dest)
            if why is None:
                try:
                    tarfile.data_filter(member, str(dest))  # links out of the folder or absolute, device files
                except tarfile.FilterError as exc:
                    why = str(exc).replace(f"'{member.name}' ", "")
            if why is not None:
                raise _refuse(archive, member.name, why)
            tar.extract(member, dest, filter="data")


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:  # the central directory: every member checked before any is written
            why = _outside(info.filename, dest)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8", "replace")
                parent = PurePosixPath(info.filename).parent
                why = _outside(str(parent / link), dest) and f"symbolic link to {link} leaves the folder"
            if why is not None:
                raise _refuse(archive, info.filename, why)
        for info in members:
            zf.extract(info, dest)


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s contents into ``dst``: folders merge, files replace."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        there = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and there.is_dir() and not there.is_symlink():
            _merge(entry, there)
        else:
            if there.is_dir() and not there.is_symlink():
                shutil.rmtree(there)
            os.replace(entry, there)


def extract(archive: Path, dest: Path, strip: str = "") -> int:
    """Extract ``archive`` into ``dest`` (created; what is there is kept, same names
    replaced), leaving out the leading folder ``strip``; returns the files written."""
    if not is_archive(archive.name):
        raise DownloadError(f"{archive.name}: not an archive data get extracts ({', '.join(SUFFIXES)})")
    staging = dest.parent / f".{dest.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    staging = staging.resolve()
    try:
        try:
            (_extract_zip if archive.name.lower().endswith(".zip") else _extract_tar)(archive, staging)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise DownloadError(f"{archive.name}: not a readable archive ({exc})") from None
        root = staging / strip if strip else staging
        if not root.is_dir():
            raise DownloadError(f"{archive.name}: no folder '{strip}/' in the archive (its record says the data is there)")
        count = sum(1 for p in root.rglob("*") if p.is_file())
        _merge(root, dest)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)
