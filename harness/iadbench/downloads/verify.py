"""Checking a file against the checksum its dataset publishes, before it is used."""

from __future__ import annotations

import hashlib
from pathlib import Path

from iadbench.types import Download

CHUNK = 1 << 20


def digests(path: Path, md5: bool = False) -> dict[str, str]:
    """The file's SHA-256 (recorded whatever the record holds), and its MD5 if asked, read once."""
    hashes = {"sha256": hashlib.sha256()}
    if md5:
        hashes["md5"] = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def expected(download: Download) -> tuple[str, str] | None:
    """(algorithm, hex digest) the record holds, SHA-256 preferred; None without one."""
    if download.sha256:
        return "sha256", download.sha256.lower()
    if download.md5:
        return "md5", download.md5.lower()
    return None


def mismatch(download: Download, path: Path, found: dict[str, str]) -> str | None:
    """What is wrong with the file (its size or checksum differs from the record), or None."""
    size = path.stat().st_size
    if download.size_bytes is not None and size != download.size_bytes:
        return f"size mismatch ({size} bytes, expected {download.size_bytes})"
    want = expected(download)
    if want is not None and found[want[0]] != want[1]:
        return f"checksum mismatch ({want[0]} {found[want[0]]}, expected {want[1]})"
    return None
