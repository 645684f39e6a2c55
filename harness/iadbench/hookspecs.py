"""The hooks a plugin may implement. Each receives a callback (or the CLI app), so a
plugin registers any number of things and the core keeps no list of names.

Every command runs the register hooks, ``adbench --help`` included, so they should be
cheap: name the callables by reference, ``factory="my_plugin.detector:MyDetector"``,
and they are imported on first use (iadbench.lazy), not when the CLI starts."""

from __future__ import annotations

import pluggy

PROJECT = "iadbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_detectors(register):
    """Offer detectors: call ``register(DetectorSpec(...))`` once for each, its factory
    a class or a ``"package.module:Class"`` reference (no torch imported to list it)."""


@hookspec
def register_datasets(register):
    """Offer datasets: call ``register(DatasetSpec(...))`` once for each (``factory``
    and ``detect`` may be references)."""


@hookspec
def register_metrics(register):
    """Offer metrics: call ``register(MetricSpec(...))`` once for each (``fn`` and
    ``resample`` may be references)."""


@hookspec
def register_commands(app):
    """Add Typer sub-commands or groups to the ``adbench`` CLI app. Runs at every start:
    import what a command needs inside its function."""


@hookspec
def register_executors(register):
    """Offer executors (where a run's cells run): call ``register(ExecutorSpec(...))``."""
