"""A name → builder registry per kind, in the manner of timm (one place adds an entry)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B", bound=Callable)


class UnknownNameError(KeyError):
    """Raised for a name no builder is registered under; carries close matches."""

    def __init__(self, kind: str, name: str, suggestions: list[str]) -> None:
        self.kind, self.name, self.suggestions = kind, name, suggestions
        hint = f"; did you mean {suggestions[0]!r}?" if suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")


def close_matches(name: str, choices: list[str]) -> list[str]:
    """Names in ``choices`` that look like ``name`` (for did-you-mean hints)."""
    return difflib.get_close_matches(name, choices, n=3, cutoff=0.5)


class Registry(Generic[B]):
    """Maps names to builders; ``register`` is a decorator, ``get`` raises with suggestions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, B] = {}

    def register(self, *names: str) -> Callable[[B], B]:
        def add(builder: B) -> B:
            for name in names:
                if name in self._builders:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> B:
        try:
            return self._builders[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, close_matches(name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
