"""PEP 562 lazy exports for the package `__init__` files (`biogpt`, `biogpt.model`,
`biogpt.training`): a name is imported from its module on first access, so importing a package
stays cheap (`import biogpt` and `biogpt --help` import no torch)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(namespace: dict[str, Any], exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the package whose globals are `namespace`; `exports` maps
    each name to the module that defines it, relative to the package (".config") or absolute."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
