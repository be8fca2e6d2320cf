"""Errors as ``{pointer, message, hint}`` with JSON pointers into the submitted document: the bottom
layer, imported by every registry and by the schema above them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SpecError:
    """One problem with a spec: where (a JSON pointer), what, and how to fix it."""

    pointer: str
    message: str
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpecInvalid(ValueError):
    """A spec that cannot run; ``errors`` lists every problem found."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors))


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
