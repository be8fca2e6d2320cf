"""Validation errors as ``{pointer, message, hint}`` with JSON pointers into the submitted document."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.registry import close_matches


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


def _document_path(loc: tuple[Any, ...], document: Any) -> list[str | int]:
    """Map a pydantic ``loc`` to a path in the document, dropping union tags and validator names."""
    path: list[str | int] = []
    node = document
    for i, item in enumerate(loc):
        if (isinstance(node, dict) and item in node) or (
            isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)
        ):
            path.append(item)
            node = node[item]
        elif isinstance(node, dict) and item == node.get("type"):
            continue  # a tagged-union member's tag, not a key of the document
        elif isinstance(node, dict) and i == len(loc) - 1 and isinstance(item, str):
            path.append(item)  # a missing field: point where it belongs
            node = None
    return path


def _tags(expected: str) -> list[str]:
    return [t.strip().strip("'\"") for t in expected.split(",") if t.strip()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation admits (through Annotated, unions and lists)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, UnionType, list):
        return [model for arg in get_args(annotation) for model in _models_in(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _pick(models: list[type[BaseModel]], node: Any) -> type[BaseModel] | None:
    """The model among ``models`` that a document object is (matched on its ``type``)."""
    for model in models:
        tag = model.model_fields.get("type")
        if tag is None or not isinstance(node, dict) or tag.default == node.get("type"):
            return model
    return None


def known_keys(root: type[BaseModel], document: Any, path: list[str | int]) -> list[str]:
    """The keys allowed in the object at ``path`` of the document, per the schema."""
    models, node = [root], document
    for part in path:
        if isinstance(part, int):
            node = node[part]
            continue
        model = _pick(models, node)
        field = model.model_fields.get(part) if model else None
        if field is None:
            return []
        models, node = _models_in(field.annotation), node[part]
    model = _pick(models, node)
    return list(model.model_fields) if model else []


def from_validation_error(exc: ValidationError, document: Any, root: type[BaseModel]) -> list[SpecError]:
    """Translate pydantic's errors into spec errors with pointers and did-you-mean hints."""
    errors: list[SpecError] = []
    for err in exc.errors(include_url=False):
        path = _document_path(tuple(err["loc"]), document)
        ctx = err.get("ctx") or {}
        kind = err["type"]
        message = err["msg"]
        hint = None
        if kind == "union_tag_invalid":
            tags = _tags(str(ctx.get("expected_tags", "")))
            matches = close_matches(str(ctx.get("tag")), tags)
            path.append("type")
            message = f"unknown type {ctx.get('tag')!r}"
            hint = f"did you mean {matches[0]!r}?" if matches else "one of: " + ", ".join(tags)
        elif kind == "union_tag_not_found":
            path.append("type")
            message = "missing 'type'"
        elif kind == "extra_forbidden":
            keys = known_keys(root, document, path[:-1])
            matches = close_matches(str(path[-1]), keys)
            message = f"unknown key {path[-1]!r}"
            hint = f"did you mean {matches[0]!r}?" if matches else "known keys: " + ", ".join(keys)
        elif kind == "spec_rule":
            path = list(ctx.get("path", path))
            hint = ctx.get("hint") or None
        elif kind == "literal_error":
            allowed = _tags(str(ctx.get("expected", "")).replace(" or ", ","))
            value = err.get("input")
            matches = close_matches(str(value), allowed) if isinstance(value, str) else []
            hint = f"did you mean {matches[0]!r}?" if matches else None
        errors.append(SpecError(pointer=pointer(*path), message=message, hint=hint))
    return errors
