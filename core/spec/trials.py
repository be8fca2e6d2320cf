"""A sweep's trials as specs. A parameter key is a path into the spec (``optimizer.lr`` or the
pointer ``/optimizer/lr``; list items by index, ``data.preprocess.0.type``); a trial's document is
the base document with its values set at those paths. ``trial_errors`` checks, before anything
runs, that every path exists and that every value is one the schema takes; ``sweep_work`` is the
training all the trials may do (for the service's quota and the dry run)."""

import copy
import itertools
import math
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


def _written(default: Any) -> Any:
    """A resolved default as a document writes it: an object by its ``type`` alone (its other
    fields are its type's defaults), a list item by item."""
    if isinstance(default, dict):
        return {"type": default["type"]} if "type" in default else {}
    if isinstance(default, list):
        return [_written(item) for item in default]
    return default


def apply(document: dict[str, Any], resolved: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` at ``key``'s path of ``document`` (in place). An object the document leaves to
    its defaults is first written out from the resolved spec (its type: ``model.dropout`` on a
    document that names no model sets an mlp's dropout, ``optimizer.type`` picks another optimizer
    with that one's defaults)."""
    parts = key_path(key)
    node, full = document, resolved
    for part in parts[:-1]:
        index: Any = int(part) if isinstance(node, list) else part
        _, full = _child(full, part)
        if isinstance(node, dict) and node.get(part) is None:
            node[part] = _written(full)
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


def _overlap(paths: dict[str, list[str]], key: str) -> SpecError | None:
    """Why ``key`` clashes with a parameter in ``paths`` (the same value, or one inside the other)."""
    parts = key_path(key)
    for other, taken in paths.items():
        if parts[: len(taken)] == taken or taken[: len(parts)] == parts:
            return SpecError(
                pointer("sweep", "parameters", key),
                f"{key!r} names the same value as {other!r}"
                if parts == taken
                else f"{key!r} and {other!r} overlap: one lies inside the other",
                "sweep one of them; an object's choices may list whole objects",
            )
    return None


def _refusal(
    document: dict[str, Any], resolved: dict[str, Any], parse: Callable[[Any], "ExperimentSpec"], params: dict[str, Any]
) -> SpecError | None:
    """The first error of the trial with ``params``, checked under the sweep's own rules too (a
    trial must have the metric the sweep compares); None when it validates."""
    try:
        parse({**trial_document(document, resolved, params), "sweep": document["sweep"]})
    except SpecInvalid as exc:
        return exc.errors[0]
    return None


def _value_errors(
    document: dict[str, Any], resolved: dict[str, Any], parse: Callable[[Any], "ExperimentSpec"], key: str, values: Any
) -> list[SpecError]:
    """The values of one parameter that the schema refuses: choices, a distribution's bounds, and
    the fractional values a float distribution draws (refused where the spec takes integers)."""
    target = pointer(*key_path(key))
    errors = []
    for tail, value in _samples(values):
        inner = _refusal(document, resolved, parse, {key: value})
        if inner is not None:
            elsewhere = f" (at {inner.pointer or '/'})" if inner.pointer != target else ""
            message = f"{value!r}: {inner.message}{elsewhere}"
            errors.append(SpecError(pointer("sweep", "parameters", key, tail), message, inner.hint))
    if errors or isinstance(values, list) or values.type == "int":
        return errors
    inner = _refusal(document, resolved, parse, {key: math.nextafter(values.low, values.high)})
    if inner is None:
        return errors
    whole = f'{{"type": "int", "low": {math.ceil(values.low)}, "high": {math.floor(values.high)}}}'
    return [
        SpecError(
            pointer("sweep", "parameters", key, "type"),
            f"a {values.type} distribution draws fractional values: {inner.message}",
            f"for whole numbers, use {whole}",
        )
    ]


def trial_errors(
    document: dict[str, Any], spec: "ExperimentSpec", parse: Callable[[Any], "ExperimentSpec"]
) -> list[SpecError]:
    """Every problem with the trials of ``spec``'s sweep: a path that does not exist or that another
    parameter sets too, a value the schema refuses (``parse`` is the schema), a grid combination
    that does not validate. Each points into ``/sweep/parameters/<key>`` and carries the inner
    error's message."""
    sweep = spec.sweep
    assert sweep is not None
    resolved = spec.model_dump(mode="json", exclude={"sweep"})
    errors: list[SpecError] = []
    paths: dict[str, list[str]] = {}
    for key, values in sweep.parameters.items():
        problem = path_error(resolved, key) or _overlap(paths, key)
        paths[key] = key_path(key)
        if problem is not None:
            errors.append(problem)
            continue
        errors.extend(_value_errors(document, resolved, parse, key, values))
    if errors or sweep.method != "grid":
        return errors
    for params in grid(sweep):
        inner = _refusal(document, resolved, parse, params)
        if inner is not None:
            where = f" (at {inner.pointer or '/'})"
            return [
                SpecError(pointer("sweep", "parameters"), f"the trial {params}: {inner.message}{where}", inner.hint)
            ]
    return errors


def _most_epochs(values: Any) -> int:
    """The most epochs a swept ``epochs`` gives a trial: its greatest choice or its range's top."""
    if isinstance(values, list):
        return max(int(value) for value in values)
    return values.low + (values.high - values.low) // values.step * values.step


def sweep_work(spec: "ExperimentSpec", samples: int) -> int:
    """Epochs × samples over all the trials of ``spec``'s sweep, ``samples`` being the data's: the
    exact sum over a grid's combinations; for random and tpe, ``trials`` × the most epochs a trial
    can get."""
    sweep = spec.sweep
    assert sweep is not None
    swept = next((values for key, values in sweep.parameters.items() if key_path(key) == ["epochs"]), None)
    if swept is None:
        return sweep.trial_count * spec.epochs * samples
    if sweep.method == "grid":
        return sum(int(value) for value in swept) * (sweep.trial_count // len(swept)) * samples
    return sweep.trials * _most_epochs(swept) * samples
