"""Imports every built-in command module so they register on the app."""

from iadbench.cli import catalog, data, export, fit, predict, report, run, serve, threshold  # noqa: F401
