"""Resumable HTTP downloads: bytes go to ``<file>.part``; a later call asks the server
for the rest with a Range request, and a server that ignores Range starts it over."""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from iadbench.downloads import DownloadError

#: Replaces the scheme and host of every dataset URL (and prefixes its path), for
#: users behind a mirror or a proxy cache: http://mirror.lan/iad turns
#: https://host/a/b.tar into http://mirror.lan/iad/a/b.tar.
MIRROR_ENV = "IADBENCH_DOWNLOAD_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 30


class Offline(DownloadError):
    """The server could not be reached at all (no route, refused, DNS)."""

    def __init__(self, url: str, reason: object):
        self.url, self.reason = url, reason
        super().__init__(f"cannot reach {url} ({reason})")


def mirrored(url: str) -> str:
    """``url`` as fetched: on the mirror named by $IADBENCH_DOWNLOAD_MIRROR, if any."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    base = urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise DownloadError(f"{MIRROR_ENV}='{mirror}' is not an http(s)://host[/path] URL")
    src = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + src.path, src.query, ""))


def part_of(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _open(url: str, start: int):
    headers = {"User-Agent": "iadbench-data-get"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)  # noqa: S310 - http(s) only, checked by the caller
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return None  # nothing left to send: the .part is whole (the checksum decides)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Offline(url, reason) from None


def _resumed_at(resp, start: int) -> int:
    """Where the body starts: ``start`` for a 206 answering our range, else 0."""
    if not start or resp.status != 206:
        return 0
    content_range = resp.headers.get("Content-Range", "")  # bytes 100-199/200
    try:
        first = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        first = -1
    if first != start:
        raise DownloadError(f"{resp.url}: asked for bytes from {start}, the server sent '{content_range}'")
    return start


def fetch(url: str, target: Path, on_start: Callable[[int | None, int], None], on_bytes: Callable[[int], None]) -> Path:
    """Download ``url`` to ``target``'s ``.part`` file, resuming what is there; returns
    the ``.part`` path once the server has sent everything it announced.

    ``on_start(total or None, bytes already there)`` then ``on_bytes(n)`` per chunk
    drive a progress bar. A dropped connection leaves the ``.part`` for the next call.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http(s) URLs are fetched")
    part = part_of(target)
    start = part.stat().st_size if part.exists() else 0
    resp = _open(url, start)
    if resp is None:
        on_start(start, start)
        return part
    with resp:
        offset = _resumed_at(resp, start)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        on_start(total, offset)
        got = offset
        try:
            with part.open("ab" if offset else "wb") as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    on_bytes(len(chunk))
        except (OSError, http.client.HTTPException) as exc:  # a reset connection, a short chunked body, a full disk
            raise DownloadError(f"{url}: download interrupted after {got} bytes ({exc}); kept {part.name}, run again to resume") from None
    if total is not None and got < total:
        raise DownloadError(f"{url}: download interrupted at {got} of {total} bytes; kept {part.name}, run again to resume")
    return part
