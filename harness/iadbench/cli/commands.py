"""Imports every built-in command module so they register on the app."""

from iadbench.cli import catalog, data, fit, predict, report, run  # noqa: F401
