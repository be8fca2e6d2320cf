"""Pydantic's validation errors as spec errors: JSON pointers into the submitted document and
did-you-mean hints."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.errors import SpecError, pointer
from core.registry import close_matches


def _document_path(loc: tuple[Any, ...], document: Any, *, missing: bool) -> list[str | int]:
    """Map a pydantic ``loc`` to a path in the document, dropping union tags and validator names;
    a ``missing`` field's name is kept, pointing where it belongs."""
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
        elif missing and isinstance(node, dict) and i == len(loc) - 1 and isinstance(item, str):
            path.append(item)
            node = None
    return path


def _tags(expected: str) -> list[str]:
    return [t.strip().strip("'\"") for t in expected.split(",") if t.strip()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation admits (through Annotated, unions, lists and a
    mapping's values)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin is dict:
        return _models_in(get_args(annotation)[1])
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


def _members_at(root: type[BaseModel], document: Any, path: list[str | int]) -> tuple[list[type[BaseModel]], Any]:
    """The models the object at ``path`` of the document may be (a tagged union's members), and the object."""
    models, node, keyed = [root], document, False
    for part in path:
        if isinstance(part, int) or keyed:  # a list's index or a mapping's key (sweep parameters)
            node, keyed = node[part], False
            continue
        model = _pick(models, node)
        field = model.model_fields.get(part) if model else None
        if field is None:
            return [], None
        keyed = get_origin(field.annotation) is dict
        models, node = _models_in(field.annotation), node[part]
    return models, node


def known_keys(root: type[BaseModel], document: Any, path: list[str | int]) -> list[str]:
    """The keys allowed in the object at ``path`` of the document, per the schema."""
    model = _pick(*_members_at(root, document, path))
    return list(model.model_fields) if model else []


def _count_or_list(annotation: Any) -> type | None:
    """``int`` or ``list`` for a field that takes a count or a list (``None`` allowed besides), else None."""
    if get_origin(annotation) in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return int if annotation is int else list if get_origin(annotation) is list else None


def _tag(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def _either(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


_AS = {int: "an integer", list: "a list"}


def count_or_list(root: type[BaseModel], document: Any, path: list[str | int], given: Any) -> SpecError | None:
    """The error for a count given where a list goes, or a list where a count goes, in a field that
    other members of the same tagged union take the other way (``layers``: a count for ``rnn``, a
    list for ``sequential``); None when the field has no such double meaning."""
    if not path or not isinstance(path[-1], str):
        return None
    name, (members, node) = path[-1], _members_at(root, document, path[:-1])
    model = _pick(members, node)
    field = model.model_fields.get(name) if model and "type" in model.model_fields else None
    takes = _count_or_list(field.annotation) if field else None
    gave = type(given)  # bool is not a count here
    if field is None or takes is None or gave not in _AS:
        return None
    others = [m for m in members if name in m.model_fields and _count_or_list(m.model_fields[name].annotation) is gave]
    if not others:
        return None
    what = f"{getattr(model, 'kind', '')} type".strip()
    about = f"{field.description} ({_AS[takes]})" if field.description else _AS[takes]
    example = f'{{"type": "{_tag(others[-1])}", "{name}": {given if gave is int else "[...]"}}}'
    take = "takes" if len(others) == 1 else "take"
    hint = f"{what} {_either([_tag(m) for m in others])} {take} {name!r} as {_AS[gave]}: e.g. {example}"
    if gave is int and get_args(field.annotation) == (int,):  # list[int]: a list of one may be meant
        hint = f"for one, write [{given}]; {hint}"
    return SpecError(pointer(*path), f"for {what} {_tag(model)!r}, {name!r} is {about}", hint)


def from_validation_error(exc: ValidationError, document: Any, root: type[BaseModel]) -> list[SpecError]:
    """Translate pydantic's errors into spec errors with pointers and did-you-mean hints."""
    errors: list[SpecError] = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        path = _document_path(tuple(err["loc"]), document, missing=kind == "missing")
        ctx = err.get("ctx") or {}
        message = err["msg"]
        hint = None
        if kind == "union_tag_invalid":
            tags = _tags(str(ctx.get("expected_tags", "")))
            matches = close_matches(str(ctx.get("tag")), tags)
            path.append("type")
            message = f"unknown type {ctx.get('tag')!r}"
            hint = (f"did you mean {matches[0]!r}? " if matches else "") + "one of: " + ", ".join(tags)
        elif kind == "union_tag_not_found":
            tags = [_tag(model) for model in _members_at(root, document, path)[0] if "type" in model.model_fields]
            path.append("type")
            message = "missing 'type'"
            hint = "one of: " + ", ".join(tags) if tags else None
        elif kind == "extra_forbidden":
            keys = known_keys(root, document, path[:-1])
            matches = close_matches(str(path[-1]), keys)
            message = f"unknown key {path[-1]!r}"
            hint = f"did you mean {matches[0]!r}?" if matches else "known keys: " + ", ".join(keys)
        elif kind in ("int_type", "list_type") and (double := count_or_list(root, document, path, err.get("input"))):
            message, hint = double.message, double.hint
        elif kind == "spec_rule":
            path = list(ctx["path"]) if "path" in ctx else path + list(ctx.get("path_tail", []))
            hint = ctx.get("hint") or None
        elif kind == "literal_error":
            allowed = _tags(str(ctx.get("expected", "")).replace(" or ", ","))
            value = err.get("input")
            matches = close_matches(str(value), allowed) if isinstance(value, str) else []
            hint = f"did you mean {matches[0]!r}?" if matches else None
        errors.append(SpecError(pointer=pointer(*path), message=message, hint=hint))
    return errors
