"""Hub method binding, done once at registration.

A hub method is a public ``async def`` (a plain method) or ``async def`` with
``yield`` (a server-to-client stream) on a ``Hub`` subclass. Its parameters are
positional; a parameter annotated ``ClientStream[T]`` (or ``AsyncIterator[T]``)
is fed by a client-to-server stream. Everything that can be checked is checked
here, so a bad hub fails at startup with a message that says how to fix it,
never at the first call.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import types
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs

from .guard import OPEN, Guard
from .streams import ClientStream

__all__ = ["BindingError", "BoundMethod", "MethodKind", "bind_hub", "hub_method", "wire_names"]

_RESERVED = frozenset({"on_connected", "on_disconnected"})
_NAME_ATTR = "__triohub_name__"
_IGNORE_ATTR = "__triohub_ignore__"


class BindingError(TypeError):
    """A hub class cannot be registered as written."""


class MethodKind(enum.Enum):
    PLAIN = "plain"
    STREAM = "stream"
    """An async generator: each ``yield`` is a StreamItem."""


Coerce = Callable[[Any], Any]
"""Checks one decoded argument against its annotation; raises TypeError."""


@attrs.frozen
class BoundMethod:
    """A hub method as the dispatcher sees it."""

    name: str
    """The Python attribute name."""
    wire_name: str
    """The canonical name (PascalCase unless given explicitly)."""
    function: Callable[..., Any]
    kind: MethodKind
    coercers: tuple[Coerce | None, ...]
    """One per non-stream parameter, in order; ``None`` = any value."""
    stream_positions: tuple[int, ...]
    """Positions (among all parameters) of ``ClientStream`` parameters."""
    stream_coercers: tuple[Coerce | None, ...] = ()
    """One per ``ClientStream[T]`` parameter: checks each item against ``T``."""
    guard: Guard = OPEN
    """The method's resolved authorization policy (read once, at registration)."""
    converts: bool = attrs.field(init=False)
    """Some parameter checks or converts its value (else the decoded arguments
    are passed as they are)."""

    argument_count: int = attrs.field(init=False)
    """The arguments a call must carry (upload streams are not among them)."""
    simple: bool = attrs.field(init=False)
    """A plain method without upload parameters: the common case, which the
    dispatcher hands to the connection's runners."""

    @converts.default
    def _converts(self) -> bool:
        return any(coerce is not None for coerce in self.coercers)

    @argument_count.default
    def _argument_count(self) -> int:
        return len(self.coercers)

    @simple.default
    def _simple(self) -> bool:
        return self.kind is MethodKind.PLAIN and not self.stream_positions

    @property
    def parameter_count(self) -> int:
        return len(self.coercers) + len(self.stream_positions)


def hub_method(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a hub method an explicit wire name (``@hub_method("Send")``)."""
    if not name or not isinstance(name, str):
        raise BindingError(f"hub_method() needs a non-empty name, got {name!r}")

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, _NAME_ATTR, name)
        return function

    return mark


def not_hub_method(function: Callable[..., Any]) -> Callable[..., Any]:
    """Keep a public async method off the wire."""
    setattr(function, _IGNORE_ATTR, True)
    return function


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def wire_names(python_name: str, explicit: str | None) -> tuple[str, ...]:
    """The names a client may use: explicit, or Python, PascalCase and camelCase."""
    if explicit is not None:
        return (explicit,)
    pascal = _pascal(python_name)
    camel = pascal[:1].lower() + pascal[1:]
    names = [pascal, camel, python_name]
    return tuple(dict.fromkeys(names))


def bind_hub(
    hub_class: type,
    guard_of: Callable[[type, str, str], Guard] = lambda _cls, _name, _wire: OPEN,
) -> Mapping[str, BoundMethod]:
    """Bind every hub method of ``hub_class``.

    Returns:
        A mapping from the lower-cased wire names to methods (targets match
        case-insensitively, as the reference's dispatcher does).

    Raises:
        BindingError: a name clash, a non-positional parameter, a sync method.
    """
    table: dict[str, BoundMethod] = {}
    owners: dict[str, str] = {}
    for python_name, function in _public_functions(hub_class):
        wire_name = _wire_name(python_name, function)
        guard = guard_of(hub_class, python_name, wire_name)
        method = _bind_one(hub_class, python_name, function, guard)
        for name in wire_names(python_name, getattr(function, _NAME_ATTR, None)):
            key = name.lower()
            if key in owners and owners[key] != python_name:
                raise BindingError(
                    f"{hub_class.__name__}: hub methods {owners[key]!r} and {python_name!r} "
                    f"both answer to {name!r}; give one an explicit @hub_method(name)"
                )
            owners[key] = python_name
            table[key] = method
    return table


def _public_functions(hub_class: type) -> list[tuple[str, Callable[..., Any]]]:
    from .hub import Hub

    found: list[tuple[str, Callable[..., Any]]] = []
    for name in dir(hub_class):
        if name.startswith("_") or name in _RESERVED:
            continue
        if any(name in vars(base) for base in Hub.__mro__):
            continue
        attribute = inspect.getattr_static(hub_class, name)
        if isinstance(attribute, staticmethod | classmethod | property):
            continue
        function = getattr(hub_class, name)
        if not inspect.isfunction(function) or getattr(function, _IGNORE_ATTR, False):
            continue
        found.append((name, function))
    return found


def _bind_one(
    hub_class: type, name: str, function: Callable[..., Any], guard: Guard
) -> BoundMethod:
    where = f"{hub_class.__name__}.{name}"
    if inspect.isasyncgenfunction(function):
        kind = MethodKind.STREAM
    elif inspect.iscoroutinefunction(function):
        kind = MethodKind.PLAIN
    else:
        raise BindingError(
            f"{where} must be 'async def' (hub methods run on the event loop); "
            "prefix it with '_' or decorate it with @not_hub_method to keep it private"
        )
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        hints = {}
    parameters = list(inspect.signature(function).parameters.values())[1:]  # drop self
    coercers: list[Coerce | None] = []
    streams: list[int] = []
    items: list[Coerce | None] = []
    for position, parameter in enumerate(parameters):
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            raise BindingError(
                f"{where}: parameter {parameter.name!r} must be positional "
                "(SignalR passes arguments by position; no *args, **kwargs or keyword-only)"
            )
        if parameter.default is not parameter.empty:
            raise BindingError(
                f"{where}: parameter {parameter.name!r} has a default, but SignalR "
                "requires the exact argument count; remove the default"
            )
        annotation = hints.get(parameter.name, Any)
        if _is_stream(annotation):
            streams.append(position)
            item_type = typing.get_args(annotation)
            items.append(coercer_for(item_type[0]) if item_type else None)
        else:
            coercers.append(coercer_for(annotation))
    return BoundMethod(
        name=name,
        wire_name=_wire_name(name, function),
        function=function,
        kind=kind,
        coercers=tuple(coercers),
        stream_positions=tuple(streams),
        stream_coercers=tuple(items),
        guard=guard,
    )


def _wire_name(name: str, function: Callable[..., Any]) -> str:
    """The name a method is reported by (``@hub_method(name=...)`` or PascalCase)."""
    return getattr(function, _NAME_ATTR, None) or _pascal(name)


def _is_stream(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin in (ClientStream, AsyncIterator, AsyncIterable) or (
        isinstance(origin, type) and issubclass(origin, ClientStream)
    )


def coercer_for(annotation: Any) -> Coerce | None:
    """A checker for decoded payload values of this annotation, or ``None``."""
    if annotation is Any or annotation is inspect.Parameter.empty or annotation is object:
        return None
    if annotation is None or annotation is type(None):
        return _exact_none
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [coercer_for(arg) for arg in typing.get_args(annotation)]
        if any(option is None for option in options):
            return None
        return _union(typing.cast(list[Coerce], options))
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        return _literal(allowed)
    target = origin or annotation
    simple = _SIMPLE.get(target)
    if simple is not None:
        return simple
    if isinstance(target, type):
        if issubclass(target, Mapping):
            return _mapping
        if issubclass(target, Sequence) and not issubclass(target, str | bytes):
            return _sequence
    return None  # unknown types are passed through unchecked


def _exact_none(value: Any) -> Any:
    if value is not None:
        raise TypeError("expected null")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _bytes(value: Any) -> bytes:
    # MessagePack carries bin; JSON carries Base64 strings (SPEC-HUB type table).
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise TypeError("expected Base64 binary data") from None
    raise TypeError(f"expected binary data, got {type(value).__name__}")


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _sequence(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return list(value)


def _union(options: list[Coerce]) -> Coerce:
    def coerce(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except TypeError:
                continue
        raise TypeError("no alternative of the union matched")

    return coerce


def _literal(allowed: tuple[Any, ...]) -> Coerce:
    def coerce(value: Any) -> Any:
        if value not in allowed:
            raise TypeError(f"expected one of {allowed!r}")
        return value

    return coerce


_SIMPLE: dict[Any, Coerce] = {
    int: _int,
    float: _float,
    str: _str,
    bool: _bool,
    bytes: _bytes,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
}
