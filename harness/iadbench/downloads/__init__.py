"""``adbench data get``: fetch a public dataset's archive, verify it, extract it safely.

The facts (URL, file name, checksum, size, licence) come from each dataset plugin's
``DatasetSpec.downloads``. The pieces: ``fetch`` (HTTP with resume from a ``.part``
file, the mirror variable), ``verify`` (SHA-256 or MD5 before use), ``archive``
(extraction that refuses members leaving the folder) and ``get`` (what a call does,
idempotent by a marker file in the dataset's folder).
"""

from __future__ import annotations


class DownloadError(Exception):
    """A fetch, a checksum or an archive failed; ``str(err)`` is the one line a user sees."""
