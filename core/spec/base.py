"""The base of every spec model and the registry of spec classes that build things."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field

from core.registry import Registry


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
