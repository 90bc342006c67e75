"""The dialect registry: each dialect module registers its style with one decorator line.

A dialect says where it stands in detection itself (``detect_priority``: the
higher, the earlier its ``detect`` is asked; more specific formats go first,
because Functionary and Mistral templates also contain Llama or Hermes-like
text), so no dialect's ``detect`` needs to know the others and there is no
central list to edit. One dialect registers as the ``fallback``: the one chosen
when no other claims the template. Dialects registered without a priority are
only reachable through ``--style NAME``.

:func:`discover` imports every public module of ``oaiproxy.dialects`` once, so
a new dialect module is registered by existing: nothing else imports it by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from oaiproxy.dialects.base import Style

S = TypeVar("S", bound=type[Style])

#: every style by its ``--style`` name, in registration order
STYLES: dict[str, type[Style]] = {}
_priorities: dict[str, int] = {}
_fallback: list[type[Style]] = []


def register(*, detect_priority: int | None = None, fallback: bool = False) -> Callable[[S], S]:
    """Class decorator: add a style to :data:`STYLES` under its ``name``.

    ``detect_priority`` puts the style in template detection (higher is asked
    first); ``fallback`` makes it the answer when no detected style claims a
    template (there is exactly one fallback).
    """

    def add(cls: S) -> S:
        if not cls.name:
            raise ValueError(f"{cls.__qualname__} has no name to register under")
        if cls.name in STYLES and STYLES[cls.name] is not cls:
            raise ValueError(f"style name {cls.name!r} is registered twice ({STYLES[cls.name].__qualname__}, "
                             f"{cls.__qualname__})")
        if fallback and _fallback and _fallback[0] is not cls:
            raise ValueError(f"{cls.__qualname__}: {_fallback[0].__qualname__} is the fallback style already")
        if detect_priority is not None:
            other = next((n for n, p in _priorities.items() if p == detect_priority and n != cls.name), None)
            if other is not None:
                raise ValueError(f"{cls.name!r} and {other!r} share detect_priority {detect_priority}: "
                                 "detection order would depend on import order")
            _priorities[cls.name] = detect_priority
        STYLES[cls.name] = cls
        if fallback:
            _fallback[:] = [cls]
        return cls

    return add


def detection_order() -> tuple[type[Style], ...]:
    """The detected styles, most specific (highest priority) first."""
    return tuple(STYLES[name] for name in sorted(_priorities, key=lambda n: -_priorities[n]))


def detect_priority(name: str) -> int | None:
    """Where the style ``name`` stands in detection (None: only reachable through ``--style``)."""
    return _priorities.get(name)


def fallback_style() -> type[Style]:
    if not _fallback:
        raise LookupError("no fallback style is registered")
    return _fallback[0]


def get_style(name: str) -> type[Style]:
    """The style registered as ``name``; a clear error listing the valid names otherwise."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; valid styles: {', '.join(sorted(STYLES))}") from None


def detect_style(template_source: str | None) -> type[Style]:
    """The dialect a chat template speaks; the fallback when none claims it (or there is no template)."""
    if template_source:
        for cls in detection_order():
            if cls.detect(template_source):
                return cls
    return fallback_style()


def sampled_styles() -> tuple[type[Style], ...]:
    """The styles that declare their own :class:`~oaiproxy.dialects.samples.Samples` (variants inherit none).

    Test tables and scripts loop over these instead of keeping their own
    dialect → template lists.
    """
    return tuple(cls for cls in STYLES.values() if vars(cls).get("samples") is not None)


_discovered: list[bool] = []


def discover() -> None:
    """Import every public module of this package once, which registers the dialects they define."""
    if _discovered:
        return
    _discovered.append(True)
    import oaiproxy.dialects as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


__all__ = ["STYLES", "detect_priority", "detect_style", "detection_order", "discover", "fallback_style", "get_style",
           "register",
           "sampled_styles"]
