"""Method registry: one file per method, registered by name with a decorator.

    from avbench.methods import register, Method

    @register("mymethod")
    class MyMethod(Method):
        ...

Every module of this package (but ``base`` and ``layers``) is a method file and is
imported when the registry is first read. Third-party packages add methods through
the entry-point group ``avbench.methods`` (each entry point names a module or a
Method subclass; loading it runs its ``@register``).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from avbench.errors import ConfigError
from avbench.methods.base import Batch, Method

_REGISTRY: dict[str, type[Method]] = {}
_NOT_METHODS = {"base", "layers", "onednn"}  # helper modules of this package
_loaded = False

__all__ = ["Batch", "Method", "register", "get_method", "available_methods"]


def register(name: str):
    """Class decorator: make ``cls`` available as method ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ConfigError(f"method {name!r} is registered twice ({_REGISTRY[key].__module__} and {cls.__module__})")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return deco


def _load_all(refresh: bool = False) -> None:
    global _loaded
    if _loaded and not refresh:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):  # one file per method, found by listing the package
        if info.name not in _NOT_METHODS and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group="avbench.methods"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not break the platform
            raise ConfigError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {e}") from None


def available_methods(refresh: bool = False) -> dict[str, type[Method]]:
    """Registered methods by name; ``refresh`` re-reads plugin entry points."""
    _load_all(refresh)
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    try:
        return methods[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(methods)}") from None
