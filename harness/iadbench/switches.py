"""On/off switches read from the environment, all spelt the same way."""

from __future__ import annotations

import os

OFF_WORDS = ("", "0", "false", "no", "off")


def env_flag(name: str, default: bool = False) -> bool:
    """True unless the variable says off (empty, 0, false, no, off); ``default`` if unset."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in OFF_WORDS
