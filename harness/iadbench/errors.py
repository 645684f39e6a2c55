"""Errors a user can act on. The CLI prints them as one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user: a path, a flag, a plan or a data file.

    ``str(err)`` is the whole message a user sees, so it names the file and what is wrong.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class DatasetError(InputError):
    """A dataset folder or one of its files cannot be used."""


class ImageError(DatasetError):
    """An image or mask file cannot be read or fails validation."""


class PluginError(Exception):
    """A plugin failed to load or registered something invalid."""


class UnknownNameError(InputError):
    """A detector, dataset, metric or category that no plugin registered."""


class UndefinedMetric(Exception):
    """Raised by a metric function when the metric is undefined for these inputs.

    The harness records NaN and the reason instead of failing the cell.
    """


class UndefinedThreshold(UndefinedMetric):
    """No threshold can be fitted (e.g. no calibration scores); the metrics that need
    one are then undefined for the same reason."""
