"""Packages whose public names are imported from their modules when first used (PEP 562):
``from ablab.analysis import history_metrics`` loads that module's imports only, not
every heavy library the package's other modules need."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def lazy_package(
    package: str, namespace: dict[str, Any], exports: dict[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``,
    ``globals()``), whose ``exports`` map each submodule to the public names it gives the
    package. A name is looked up once, then kept in ``namespace``; a submodule's name
    resolves to the submodule."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            if importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f"{package}.{name}")  # a submodule
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return sorted(where), __getattr__, __dir__


class LazyModule:
    """A stand-in for a module that imports it on its first attribute access::

        np = LazyModule("numpy")  # in a module that registers components

    so that registering, listing and planning (``ablab list``, ``ablab schema``, a dry
    run) do not pay for numpy, while the functions that read data use ``np.`` as usual.
    Nothing is put in ``sys.modules`` until the module is really imported. Annotations
    that name it must be strings (``from __future__ import annotations``)."""

    def __init__(self, name: str):
        self.__name = name

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name)
        self.__dict__.update(module.__dict__)  # later look-ups: plain attributes
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazily imported module {self.__name!r}>"
