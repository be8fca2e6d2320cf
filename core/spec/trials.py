"""A sweep's trials as specs. A parameter key is a path into the spec (``optimizer.lr`` or the
pointer ``/optimizer/lr``; list items by index, ``data.preprocess.0.type``); a trial's document is
the base document with its values set at those paths. ``trial_errors`` checks, before anything
runs, that every path exists and that every value is one the schema takes."""

import copy
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.errors import SpecError, SpecInvalid, pointer
from core.registry import close_matches

if TYPE_CHECKING:
    from core.spec.schema import ExperimentSpec
    from core.spec.sweep import SweepSpec


def key_path(key: str) -> list[str]:
    """The path a parameter key names: a JSON pointer's parts, or the dotted parts."""
    if key.startswith("/"):
        return [part.replace("~1", "/").replace("~0", "~") for part in key[1:].split("/")]
    return key.split(".")


def _child(node: Any, part: str) -> tuple[bool, Any]:
    """(found, value) of ``part`` in a dict (key) or list (index)."""
    if isinstance(node, dict):
        return part in node, node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return True, node[int(part)]
    return False, None


def path_error(resolved: dict[str, Any], key: str) -> SpecError | None:
    """Why ``key`` names no value of the resolved spec (None when it does); the error points at
    the parameter, its hint at the closest existing key."""
    where = pointer("sweep", "parameters", key)
    parts = key_path(key)
    if parts[0] == "sweep":
        return SpecError(where, "a sweep cannot search over its own settings")
    node: Any = resolved
    for depth, part in enumerate(parts):
        found, value = _child(node, part)
        if not found:
            known = ".".join(parts[:depth]) or "the spec"
            if isinstance(node, dict):
                matches = close_matches(part, list(node))
                hint = f"did you mean {'.'.join([*parts[:depth], matches[0]])!r}?" if matches else None
                return SpecError(where, f"{part!r} is not a field of {known}", hint or "known: " + ", ".join(node))
            if isinstance(node, list):
                return SpecError(where, f"{known} is a list of {len(node)}; {part!r} is not an index of it")
            return SpecError(where, f"{known} is {'null' if node is None else 'a single value'} in this spec")
        node = value
    return None


def apply(document: dict[str, Any], resolved: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` at ``key``'s path of ``document`` (in place). An object the document leaves to
    its defaults is first copied from the resolved spec, so ``model.dropout`` works on a document
    that names no model."""
    parts = key_path(key)
    node, full = document, resolved
    for part in parts[:-1]:
        index: Any = int(part) if isinstance(node, list) else part
        _, full = _child(full, part)
        if isinstance(node, dict) and node.get(part) is None:
            node[part] = copy.deepcopy(full)
        node = node[index]
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value


def trial_document(base: dict[str, Any], resolved: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The document of one trial: ``base`` (without its ``sweep``) with ``params`` applied."""
    document = copy.deepcopy({name: value for name, value in base.items() if name != "sweep"})
    for key, value in params.items():
        apply(document, resolved, key, value)
    return document


def grid(sweep: "SweepSpec") -> list[dict[str, Any]]:
    """Every combination of a grid sweep's values, the first parameter varying slowest."""
    keys = list(sweep.parameters)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*sweep.parameters.values())]


def _samples(values: Any) -> list[tuple[str | int, Any]]:
    """The values of one parameter that stand for all of it: each choice, or a distribution's bounds."""
    if isinstance(values, list):
        return list(enumerate(values))
    return [("low", values.low), ("high", values.high)]


def trial_errors(
    document: dict[str, Any], spec: "ExperimentSpec", parse: Callable[[Any], "ExperimentSpec"]
) -> list[SpecError]:
    """Every problem with the trials of ``spec``'s sweep: a path that does not exist, a value the
    schema refuses (``parse`` is the schema), a grid combination that does not validate. Each
    points into ``/sweep/parameters/<key>`` and carries the inner error's message."""
    sweep = spec.sweep
    assert sweep is not None
    resolved = spec.model_dump(mode="json", exclude={"sweep"})
    errors: list[SpecError] = []
    for key, values in sweep.parameters.items():
        missing = path_error(resolved, key)
        if missing is not None:
            errors.append(missing)
            continue
        target = pointer(*key_path(key))
        for tail, value in _samples(values):
            try:
                parse(trial_document(document, resolved, {key: value}))
            except SpecInvalid as exc:
                inner = exc.errors[0]
                elsewhere = f" (at {inner.pointer or '/'})" if inner.pointer != target else ""
                errors.append(
                    SpecError(
                        pointer("sweep", "parameters", key, tail), f"{value!r}: {inner.message}{elsewhere}", inner.hint
                    )
                )
    if errors or sweep.method != "grid":
        return errors
    for params in grid(sweep):
        try:
            parse(trial_document(document, resolved, params))
        except SpecInvalid as exc:
            inner = exc.errors[0]
            where = f" (at {inner.pointer or '/'})"
            return [SpecError(pointer("sweep", "parameters"), f"the trial {params}: {inner.message}{where}", inner.hint)]
    return errors
