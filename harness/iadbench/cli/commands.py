"""Imports every built-in command module so they register on the app."""

from iadbench.cli import data  # noqa: F401
