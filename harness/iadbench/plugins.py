"""Finding plugins (entry points of group ``iadbench``) and building the registry.

Built-in plugins are entry points like any third-party one. A plugin that fails to
import or to register is recorded as broken and warned about, never a dead CLI;
``IADBENCH_STRICT_PLUGINS=1`` makes that fatal.

Specs may name their callables by reference (``"package.module:attr"``, iadbench.lazy):
loading the registry then imports no detector, metric or dataset code. A reference
whose module does not exist breaks its plugin here; one that exists but fails to
import is a PluginError on first use, or a broken plugin under ``load_references``
(``adbench plugins --check``).

Environment:
  IADBENCH_STRICT_PLUGINS=1     a broken plugin raises instead of warning
  IADBENCH_BLOCK_PLUGINS=a,b    never load these entry points
  IADBENCH_PLUGINS=a,b          load only these entry points (allow-list)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from iadbench import hookspecs
from iadbench.errors import PluginError, UnknownNameError
from iadbench.lazy import describe, module_exists, references
from iadbench.switches import env_flag
from iadbench.types import DatasetSpec, DetectorSpec, ExecutorSpec, MetricSpec

ENTRY_POINT_GROUP = hookspecs.PROJECT


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def strict_plugins() -> bool:
    return env_flag("IADBENCH_STRICT_PLUGINS")


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    status: str  # "ok", "broken", "blocked"
    error: str | None = None
    provides: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the loaded plugins registered, by name."""

    detectors: dict[str, DetectorSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    executors: dict[str, ExecutorSpec] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    manager: pluggy.PluginManager | None = None

    def detector(self, name: str) -> DetectorSpec:
        return _lookup(self.detectors, name, "detector")

    def dataset(self, name: str) -> DatasetSpec:
        return _lookup(self.datasets, name, "dataset")

    def metric(self, name: str) -> MetricSpec:
        return _lookup(self.metrics, name, "metric")

    def executor(self, name: str) -> ExecutorSpec:
        return _lookup(self.executors, name, "executor")


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownNameError(f"unknown {kind} '{name}' (known: {known})") from None


def _problem(plugin: str, message: str) -> None:
    if strict_plugins():
        raise PluginError(f"plugin '{plugin}': {message}")
    warnings.warn(f"iadbench plugin '{plugin}' is broken: {message}", stacklevel=3)


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_registry(extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load every allowed entry point (plus ``extra_plugins``, name -> module or
    object, which tests use) and collect what they register."""
    pm = make_manager()
    registry = Registry(manager=pm)
    allow = _env_list("IADBENCH_PLUGINS")
    block = _env_list("IADBENCH_BLOCK_PLUGINS") or set()

    candidates: list[tuple[str, Callable[[], object], str, str | None]] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        version = ep.dist.version if ep.dist is not None else None
        candidates.append((ep.name, ep.load, ep.value, version))
    for name, obj in (extra_plugins or {}).items():
        candidates.append((name, lambda obj=obj: obj, getattr(obj, "__name__", repr(obj)), None))

    for name, load, module, version in candidates:
        if name in registry.plugins:
            continue  # the same distribution seen twice on sys.path
        info = PluginInfo(name=name, module=module, version=version, status="ok")
        registry.plugins[name] = info
        # The core's own entry points (the local executor) are outside the lists: a list
        # that left them out would leave nothing able to run a cell.
        core = module.split(":")[0].startswith(f"{hookspecs.PROJECT}.")
        if not core and (name in block or (allow is not None and name not in allow)):
            info.status = "blocked"
            pm.set_blocked(name)  # pluggy then refuses it, should anything register it later
            continue
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except Exception as exc:  # a plugin's import error must not kill the CLI
            info.status, info.error = "broken", f"{type(exc).__name__}: {exc}"
            _problem(name, info.error)
            continue

    # A misspelt hookimpl: mark its plugin broken, drop it, check again until clean.
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            registry.plugins[name].status = "broken"
            registry.plugins[name].error = str(exc)
            pm.unregister(exc.plugin)
            _problem(name, str(exc))

    _collect(pm, registry)
    return registry


def _callers_by_plugin(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Callable[..., Any]]:
    """Per plugin implementing ``hook_name``, a hook caller that runs that plugin's
    implementation alone: ``tryfirst`` ones first, ``trylast`` ones last, the rest in the
    order plugins were registered (first come, first served for a contested name).
    Calls go through pluggy (``pm.subset_hook_caller``), so its tracing, hook-call
    monitoring and blocking apply; one call per plugin keeps a plugin that raises from
    taking the others' registrations down with it."""
    registered = [name for name, plugin in pm.list_name_plugin() if plugin is not None]
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    impls = sorted(impls, key=lambda i: (0 if i.tryfirst else 2 if i.trylast else 1, registered.index(i.plugin_name)))
    plugins = {impl.plugin_name: impl.plugin for impl in impls}
    return {
        name: pm.subset_hook_caller(hook_name, remove_plugins=[p for other, p in plugins.items() if other != name])
        for name in plugins
    }


#: The register hooks, what each must register, and where it lands in the Registry.
KINDS = (
    ("register_detectors", DetectorSpec, "detectors"),
    ("register_datasets", DatasetSpec, "datasets"),
    ("register_metrics", MetricSpec, "metrics"),
    ("register_executors", ExecutorSpec, "executors"),
)


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Call each register hook through pluggy, one plugin at a time in pluggy's order
    (so a ``tryfirst`` plugin claims a contested name first). A plugin that raises, or
    registers a wrong type or a taken name, is marked broken alone: everything it
    registered, in this hook and the ones before, is taken back."""
    added: dict[str, list[tuple[dict, Any]]] = {}

    def drop(plugin_name: str, exc: Exception) -> None:
        for table, spec in added.pop(plugin_name, []):
            table.pop(spec.name, None)
        info = registry.plugins.get(plugin_name)
        if info is not None:
            info.status, info.error, info.provides = "broken", f"{type(exc).__name__}: {exc}", []
        pm.unregister(name=plugin_name)
        _problem(plugin_name, f"{type(exc).__name__}: {exc}")

    for hook_name, spec_type, attr in KINDS:
        table = getattr(registry, attr)
        for plugin_name, caller in _callers_by_plugin(pm, hook_name).items():
            staged: list[Any] = []

            def register(spec: Any, spec_type=spec_type, staged=staged) -> None:
                if not isinstance(spec, spec_type):
                    raise PluginError(f"registered {type(spec).__name__}, expected {spec_type.__name__}")
                _check_modules(spec)
                staged.append(spec)

            try:
                caller(register=register)
                seen: set[str] = set()
                for spec in staged:
                    if spec.name in table or spec.name in seen:
                        owner = table[spec.name].plugin if spec.name in table else plugin_name
                        raise PluginError(f"'{spec.name}' is already registered by plugin '{owner}'")
                    seen.add(spec.name)
            except Exception as exc:
                drop(plugin_name, exc)
                continue
            info = registry.plugins.get(plugin_name)
            for spec in staged:
                spec.plugin = plugin_name
                table[spec.name] = spec
                added.setdefault(plugin_name, []).append((table, spec))
                if info is not None:
                    info.provides.append(spec.name)


def _check_modules(spec: Any) -> None:
    """A reference to a module that does not exist breaks its plugin now, as a failed
    import would have; the look is at files only (importing it is what references save)."""
    for attr, ref in references(spec).items():
        module = ref.partition(":")[0]
        if not module_exists(module):
            raise PluginError(f"{describe(spec)}: {attr} '{ref}': no module named '{module}'")


def load_references(registry: Registry) -> None:
    """Import every reference and check every detector's params against its factory
    (``adbench plugins --check``; slow: imports torch). A plugin one of whose specs
    fails is marked broken and everything it registered is taken out, as if it had
    failed to load."""
    for _hook, _type, attr in KINDS:
        for spec in list(getattr(registry, attr).values()):
            info = registry.plugins.get(spec.plugin)
            if info is not None and info.status == "broken":
                continue  # taken out already: its first failure is the one reported
            try:
                for attr_name in references(spec):
                    getattr(spec, attr_name)
                if isinstance(spec, DetectorSpec):
                    spec.params  # noqa: B018 - derived from, and checked against, the factory
            except Exception as exc:
                _take_out(registry, spec.plugin, f"{type(exc).__name__}: {exc}")


def _take_out(registry: Registry, plugin_name: str, error: str) -> None:
    for _hook, _type, attr in KINDS:
        table = getattr(registry, attr)
        for name in [n for n, s in table.items() if s.plugin == plugin_name]:
            del table[name]
    info = registry.plugins.get(plugin_name)
    if info is not None:
        info.status, info.error, info.provides = "broken", error, []


#: (id of the CLI app, plugin name) pairs whose commands are on that app already:
#: main() may run many times in one process (tests), a command must be added once.
_COMMANDS_ADDED: set[tuple[int, str]] = set()


def register_commands(registry: Registry, app: Any) -> None:
    """Let plugins add CLI commands, each plugin once per app; a plugin that fails
    here is warned about and marked broken."""
    assert registry.manager is not None
    for plugin_name, caller in _callers_by_plugin(registry.manager, "register_commands").items():
        if (id(app), plugin_name) in _COMMANDS_ADDED:
            continue
        _COMMANDS_ADDED.add((id(app), plugin_name))
        try:
            caller(app=app)
        except Exception as exc:
            info = registry.plugins.get(plugin_name)
            if info is not None:
                info.status, info.error = "broken", f"{type(exc).__name__}: {exc}"
            _problem(plugin_name, f"register_commands: {type(exc).__name__}: {exc}")


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None
