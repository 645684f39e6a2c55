"""Where the backbone weights and the feature cache live on disk, and how files get
there: written whole to a temporary name and renamed, so that the processes of a grid
that share the cache never read half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def cache_root() -> Path:
    """The cache folder shared by all processes: ``IADBENCH_CACHE`` or the user cache."""
    env = os.environ.get("IADBENCH_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("iadbench"))


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``tensors`` to ``path`` as safetensors; readers see the old file or the new one."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem[:16] + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        # mkstemp makes the file 0600; give it a plain file's mode, so that a container's
        # non-root user (or a colleague) can read a model folder written here
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic on POSIX
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
