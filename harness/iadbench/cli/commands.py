"""Imports every built-in command module so they register on the app."""

from iadbench.cli import catalog, data, export, feedback, fit, predict, report, run, runs, serve, threshold, update, watch  # noqa: F401
