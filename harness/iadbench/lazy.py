"""Lazy references to a plugin's callables: ``"package.module:attr"``, imported on first use.

A plugin that registers ``DetectorSpec(name="padim", factory="iadbench_padim.detector:Padim")``
lets ``adbench list`` and ``--help`` run without importing torch: the registry only
checks that the module exists (a look at files, no import) and the reference is imported
the first time the spec's callable is read. A callable (a class, a function) is taken
as it is, so eager plugins keep working.

A spec field that takes either is a ``LazyCallable`` descriptor: reading it gives the
callable, importing it once; ``reference(spec, field)`` gives the text, or None for an
eager one.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

from iadbench.errors import PluginError

_NAME = r"[A-Za-z_]\w*"
_REFERENCE = re.compile(rf"^{_NAME}(\.{_NAME})*:{_NAME}(\.{_NAME})*$")


def parse(ref: str) -> tuple[str, str]:
    """``"pkg.mod:Attr"`` as (module, attribute path); PluginError where it is not one."""
    if not _REFERENCE.match(ref):
        raise PluginError(f"'{ref}' is not a reference of the form 'package.module:attribute'")
    module, _, attr = ref.partition(":")
    return module, attr


def module_exists(module: str) -> bool:
    """Whether ``module`` can be found, without importing it or its parent packages
    (importing ``iadbench.metrics`` alone would load scikit-learn)."""
    if module in sys.modules:
        return True
    path = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        found = sys.modules.get(name)
        spec = found.__spec__ if found is not None and getattr(found, "__spec__", None) else None
        if spec is None:
            spec = _find_spec(name, path)
        if spec is None:
            return False
        path = spec.submodule_search_locations
        if depth < len(parts) and path is None:  # a module, not a package: no submodules
            return False
    return True


def _find_spec(name: str, path: list[str] | None) -> Any:
    """What the import system would find for ``name`` under its parent's ``path``, asking
    every finder on sys.meta_path as an import does (an editable install has its own),
    without executing anything."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, path)
        except (ImportError, ValueError):
            return None
        if spec is not None:
            return spec
    return None


def resolve(ref: str) -> Any:
    """Import the reference's module and return its attribute."""
    module, attr = parse(ref)
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def describe(spec: Any) -> str:
    """Who owns ``spec``, for error messages: "plugin 'p': detector 'name'"."""
    kind = type(spec).__name__.removesuffix("Spec").lower()
    owner = f"plugin '{spec.plugin}': " if getattr(spec, "plugin", "") else ""
    return f"{owner}{kind} '{getattr(spec, 'name', '?')}'"


class LazyCallable:
    """A spec field holding a callable or a ``"package.module:attr"`` reference to one.

    Reading it returns the callable, importing a reference the first time; a reference
    that does not import is a one-line PluginError naming the plugin, the field and the
    reference, every time it is read (nothing half-loaded is kept). ``required``: the
    field has no default (a dataclass asks the descriptor for one with ``obj=None``).
    """

    def __init__(self, required: bool = True):
        self.required = required

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.raw = f"_{name}_given"
        self.loaded = f"_{name}_loaded"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if self.required:
                raise AttributeError(self.name)  # dataclasses: the field has no default
            return None
        state = obj.__dict__
        if self.loaded in state:
            return state[self.loaded]
        given = state.get(self.raw)
        if not isinstance(given, str):
            return given
        try:
            value = resolve(given)
        except Exception as exc:  # ImportError, AttributeError, or the module's own failure
            raise PluginError(f"{describe(obj)}: {self.name} '{given}' does not load: {type(exc).__name__}: {exc}") from exc
        if not callable(value):
            raise PluginError(f"{describe(obj)}: {self.name} '{given}' is a {type(value).__name__}, not a callable")
        state[self.loaded] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        if isinstance(value, str):
            parse(value)  # a malformed reference is the plugin's error at registration
        obj.__dict__[self.raw] = value
        obj.__dict__.pop(self.loaded, None)


def reference(spec: Any, field: str) -> str | None:
    """The reference text a spec's field was given, or None where it was given a callable."""
    given = vars(spec).get(f"_{field}_given")
    return given if isinstance(given, str) else None


def references(spec: Any) -> dict[str, str]:
    """Every field of ``spec`` given as a reference, field -> text."""
    return {
        name: ref
        for name, attr in vars(type(spec)).items()
        if isinstance(attr, LazyCallable) and (ref := reference(spec, name)) is not None
    }


def is_loaded(spec: Any, field: str) -> bool:
    """Whether the field holds its callable now (given one, or its reference imported)."""
    return reference(spec, field) is None or f"_{field}_loaded" in vars(spec)
