"""A detector's parameters, declared once: its factory's signature.

The signature (names, defaults, type annotations) is the truth. ``DetectorSpec.params``
may be omitted (then it is the signature's defaults) and, where a plugin gives it, is
checked against the signature: every key a parameter, every default the same
(``check_spec``). To register a variant with other defaults, give
``functools.partial(Factory, key=value)`` as the factory: its signature carries them.

A factory that takes ``**kwargs`` (the anomalib adapter's) declares nothing itself:
its spec's params are the truth, and a value is only promoted from int to float where
the default is a float.

User values (``--set DETECTOR.KEY=VALUE``, a plan file's params) are checked and
coerced against the annotation at plan time (``coerce_params``): an int becomes a
float where the parameter is a float, a value of another type is a one-line error.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iadbench.errors import InputError, PluginError

EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a factory. ``default`` is EMPTY where it has none,
    ``annotation`` None where the type is unknown (no annotation, or one that does not
    resolve at run time)."""

    name: str
    default: Any
    annotation: Any = None


def factory_name(factory: Any) -> str:
    inner = getattr(factory, "func", factory)  # functools.partial
    return getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(inner)


def _annotation(param: inspect.Parameter, namespace: dict[str, Any]) -> Any:
    ann = param.annotation
    if ann is EMPTY:
        return None
    if isinstance(ann, str):  # ``from __future__ import annotations``: resolve it here
        try:
            return eval(ann, namespace)  # noqa: S307 - the plugin's own annotation text
        except Exception:  # a name imported only for type checkers: type unknown
            return None
    return ann


def _namespace(factory: Any) -> dict[str, Any]:
    inner = getattr(factory, "func", factory)
    init = inner.__init__ if isinstance(inner, type) else inner
    init = inspect.unwrap(init)
    found = getattr(init, "__globals__", None)
    if found is None:
        found = getattr(sys.modules.get(getattr(inner, "__module__", ""), None), "__dict__", {})
    return dict(found)


def declared_params(factory: Any) -> dict[str, Param] | None:
    """The factory's keyword parameters in order, or None where it declares none it
    could be checked against: it takes ``**kwargs``, or has no inspectable signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins (tests register ``dict``) and C callables
        return None
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    namespace = _namespace(factory)
    return {
        p.name: Param(p.name, p.default, _annotation(p, namespace))
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def default_params(factory: Any) -> dict[str, Any]:
    """``DetectorSpec.params`` where a plugin omits it: the signature's defaults."""
    declared = declared_params(factory) or {}
    return {name: p.default for name, p in declared.items() if p.default is not EMPTY}


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def same_default(a: Any, b: Any) -> bool:
    """Equal as a user would see them: 4 == 4.0, [1] == (1,), but True != 1."""
    a, b = _normal(a), _normal(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a truth value
        return a is b


def check_spec(spec: Any) -> None:
    """Raise PluginError (one line) where ``spec.params`` disagrees with its factory's
    signature: a key that is no parameter, a default that differs, a parameter without
    a default the spec does not supply. The registry reports the plugin broken."""
    declared = declared_params(spec.factory)
    if declared is None:
        return
    where = f"detector '{spec.name}'"
    factory = factory_name(spec.factory)
    for key, value in spec.params.items():
        param = declared.get(key)
        if param is None:
            known = ", ".join(declared) or "none"
            raise PluginError(f"{where}: param '{key}' is not a parameter of {factory} (its parameters: {known})")
        if param.default is not EMPTY and not same_default(value, param.default):
            raise PluginError(
                f"{where}: param '{key}' defaults to {value!r} in the spec but to {param.default!r} in "
                f"{factory}'s signature (omit it from DetectorSpec.params, or register functools.partial({factory}, "
                f"{key}=...))"
            )
    required = [name for name, p in declared.items() if p.default is EMPTY and name not in spec.params]
    if required:
        raise PluginError(
            f"{where}: parameter(s) {', '.join(required)} of {factory} have no default: give them one "
            f"in the signature or in DetectorSpec.params"
        )
    for attr in ("backbone_param", "weights_param"):
        named = getattr(spec, attr, None)
        if named is not None and named not in spec.params:
            raise PluginError(f"{where}: {attr} '{named}' is not one of its params")


# --- coercion of user values ---------------------------------------------------------


class TypeMismatch(ValueError):
    """A user value does not fit its parameter's declared type (coerce_value)."""


def type_text(tp: Any) -> str:
    """An annotation in words a user reads: ``float``, ``list of str or null``."""
    if tp is None or tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence, typing.Sequence) or tp in (list, tuple):
        return f"list of {type_text(args[0])}" if args and args[0] is not Ellipsis else "list"
    if origin is dict or tp is dict:
        return "table"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as the annotation ``tp`` wants it, or TypeMismatch. Unknown types pass
    unchanged: the constructor checks them."""
    if tp is None or tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise TypeMismatch
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            try:
                return _coerce(value, arg)
            except TypeMismatch:
                continue
        raise TypeMismatch
    if origin is typing.Literal:
        if any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in args):
            return value
        raise TypeMismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeMismatch
    if tp is int:
        if isinstance(value, bool):
            raise TypeMismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeMismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeMismatch
    if tp is str or tp is Path:
        if isinstance(value, str):
            return value
        raise TypeMismatch
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeMismatch
        if origin is tuple and args and Ellipsis not in args:
            if len(value) != len(args):
                raise TypeMismatch
            return [_coerce(v, a) for v, a in zip(value, args, strict=True)]
        item = args[0] if args else None
        return [_coerce(v, item) for v in value]
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise TypeMismatch
    return value


def coerce_value(param: Param, value: Any) -> Any:
    """One user value checked against its parameter; raises TypeMismatch."""
    if param.annotation is None:
        # Undeclared type (a **kwargs factory's spec param): promote an int where the
        # default is a float, so 1 and 1.0 name the same setup; the rest is the constructor's.
        if isinstance(param.default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    return _coerce(value, param.annotation)


def spec_params(spec: Any) -> dict[str, Param]:
    """Every user-settable parameter of a spec: its params' keys, typed from the
    factory's signature where it declares one."""
    declared = declared_params(spec.factory) or {}
    return {key: declared.get(key) or Param(key, default) for key, default in spec.params.items()}


def coerce_params(spec: Any, values: dict[str, Any]) -> dict[str, Any]:
    """User values for ``spec`` checked and coerced against the declared types; an
    unknown key or a value of the wrong type is an InputError naming it."""
    params = spec_params(spec)
    unknown = sorted(set(values) - set(params))
    if unknown:
        known = ", ".join(sorted(params)) or "none"
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for detector '{spec.name}' (known: {known})")
    out = {}
    for key, value in values.items():
        try:
            out[key] = coerce_value(params[key], value)
        except TypeMismatch:
            raise InputError(
                f"detector '{spec.name}': parameter {key} must be {type_text(params[key].annotation)}, got {value!r}"
            ) from None
    return out
