"""A name → builder registry per kind, in the manner of timm (one place adds an entry), and the
spec classes every registry holds: the bottom layer, under the registries and the schema."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

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


class SpecModel(BaseModel):
    """Strict spec object: unknown keys are errors (the error names the closest known key)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TypedSpec(SpecModel):
    """A spec object chosen by its ``type`` field; subclasses set ``type`` as a Literal."""

    type: str
    kind: ClassVar[str] = ""


class SpecRegistry(Registry[type[TypedSpec]]):
    """A registry whose entries are spec classes keyed by their ``type`` literal."""

    def add(self, spec_class: type[TypedSpec]) -> type[TypedSpec]:
        """Class decorator: register ``spec_class`` under the default of its ``type`` field."""
        name = spec_class.model_fields["type"].default
        if not isinstance(name, str):
            raise TypeError(f"{spec_class.__name__}.type needs a string default")
        return self.register(name)(spec_class)

    def union(self) -> Any:
        """The pydantic tagged union over every registered class (discriminated on ``type``)."""
        classes = tuple(self.get(name) for name in self.names())
        return Annotated[Union[classes], Field(discriminator="type")]
