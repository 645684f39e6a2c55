"""The hooks a plugin may implement. Each receives a callback (or the CLI app), so a
plugin registers any number of things and the core keeps no list of names."""

from __future__ import annotations

import pluggy

PROJECT = "iadbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_detectors(register):
    """Offer detectors: call ``register(DetectorSpec(...))`` once for each."""


@hookspec
def register_datasets(register):
    """Offer datasets: call ``register(DatasetSpec(...))`` once for each."""


@hookspec
def register_metrics(register):
    """Offer metrics: call ``register(MetricSpec(...))`` once for each."""


@hookspec
def register_commands(app):
    """Add Typer sub-commands or groups to the ``adbench`` CLI app."""


@hookspec
def register_executors(register):
    """Offer executors (where a run's cells run): call ``register(ExecutorSpec(...))``."""
