"""The digest of the source an image is built from: Python files of the core, the
plugins and the datasets, and pyproject.toml. deploy/image.sh labels the image with it
(``iadbench.source``); the container test compares it with the checkout's, so an image
built from older code is named as stale rather than failing on a model it cannot read."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOTS = ("harness", "plugins", "datasets")


def source_digest(repo: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for root in ROOTS for p in (repo / root).rglob("*.py") if "__pycache__" not in p.parts)
    for path in [*files, repo / "pyproject.toml"]:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    print(source_digest(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent))
