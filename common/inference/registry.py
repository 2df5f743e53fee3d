"""Name -> class registries of the inference stages (:data:`common.inference.lifters.LIFTERS`,
:data:`common.inference.length_sources.LENGTH_SOURCES`) and the small options each registered class is built from.

A registry maps a name to ``"module:Class"``; the module is imported only when the name is picked. A class
that needs settings declares them as a dataclass ``Options`` (each field named after the ``inference.py`` flag
it comes from, e.g. ``lifter_ckpt``) and is built as ``Class(options)``; a class without ``Options`` is built as
``Class()``. The run's settings reach a class only through its own ``Options``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping, TypeVar

from common.utils.errors import UserError

T = TypeVar("T")


def registered_class(registry: Mapping[str, str], name: str, flag: str) -> type:
    """The class registered as ``name`` (one-line error naming ``flag`` for an unknown name)."""
    if name not in registry:
        raise UserError(f"unknown {flag} {name!r}: choose from {', '.join(registry)}")
    module, _, cls = registry[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def options_from(options_type: type[T], settings: Mapping[str, Any]) -> T:
    """An ``options_type`` dataclass whose fields are taken from ``settings`` where it has them (the dataclass's
    defaults otherwise)."""
    names = {f.name for f in dataclasses.fields(options_type)}
    return options_type(**{k: v for k, v in settings.items() if k in names})


def reads(cls: type, setting: str) -> bool:
    """Whether the registered class ``cls`` takes ``setting`` (a field of its ``Options``)."""
    options_type = getattr(cls, "Options", None)
    return options_type is not None and setting in {f.name for f in dataclasses.fields(options_type)}


def build(cls: type, settings: Mapping[str, Any]) -> Any:
    """``cls(cls.Options from settings)``, or ``cls()`` when the class declares no ``Options``."""
    options_type = getattr(cls, "Options", None)
    return cls() if options_type is None else cls(options_from(options_type, settings))
