"""JSON Patch ops (RFC 6902) against a resolved spec document (``spec.model_dump(mode="json")``)
that the verdicts suggest. Every op is checked against the document: a ``replace`` names a value
it has, an ``add`` a list or object it has; an op that would change nothing is left out."""

from typing import Any

from core.insight import thresholds as t

Op = dict[str, Any]

SATURATING = frozenset({"sigmoid", "tanh"})
# Inits whose scale follows the layer's fan-in / fan-out (unlike a fixed-std normal or zeros).
SCALED_INITS = frozenset({"default", "xavier_normal", "xavier_uniform", "lecun_normal", "kaiming", "orthogonal"})
# Preprocessing steps that bring every feature to a unit scale.
SCALING_STEPS = frozenset({"standardize", "minmax", "zca_whiten"})


def _resolve(document: Any, path: str) -> tuple[bool, Any]:
    node = document
    for raw in path.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def value_at(document: dict[str, Any], path: str, default: Any = None) -> Any:
    found, value = _resolve(document, path)
    return value if found else default


def replace(document: dict[str, Any], path: str, value: Any) -> list[Op]:
    """``[replace path value]`` when the document has ``path`` and a different value there."""
    found, current = _resolve(document, path)
    return [{"op": "replace", "path": path, "value": value}] if found and current != value else []


def append(document: dict[str, Any], path: str, value: Any) -> list[Op]:
    """``[add path/- value]`` when ``path`` is a list of the document."""
    found, current = _resolve(document, path)
    return [{"op": "add", "path": f"{path}/-", "value": value}] if found and isinstance(current, list) else []


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def lr_pointer(document: dict[str, Any]) -> str:
    """Where the run's learning rate is set: a one-cycle schedule's peak, else the optimizer's."""
    return "/schedule/max_lr" if value_at(document, "/schedule/type") == "one_cycle" else "/optimizer/lr"


def scale_lr(document: dict[str, Any], factor: float) -> list[Op]:
    """The learning rate times ``factor`` (within the schema's bound)."""
    path = lr_pointer(document)
    lr = value_at(document, path)
    if not isinstance(lr, int | float):
        return []
    return replace(document, path, min(_round(lr * factor), t.LR_MAX))


def activation(document: dict[str, Any]) -> str | None:
    """The model's activation type (None for models without one: linear, rnn)."""
    return value_at(document, "/model/activation/type")


def init_type(document: dict[str, Any]) -> str | None:
    return value_at(document, "/model/init/type")


def fitting_init(document: dict[str, Any]) -> dict[str, Any]:
    """The init the notes give for the model's activation: Kaiming for ReLUs and their kin
    (std √(2/fan_in), 004), the notes' "Xavier" std 1/√fan_in (``lecun_normal``) for sigmoid,
    tanh and selu, PyTorch's default for models without an activation."""
    kind = activation(document)
    if kind is None:
        return {"type": "default"}
    if kind in SATURATING or kind == "selu":
        return {"type": "lecun_normal"}
    return {"type": "kaiming"}


def fix_init(document: dict[str, Any]) -> list[Op]:
    """Replace the init with ``fitting_init`` (nothing when the model has that init already)."""
    wanted = fitting_init(document)
    return [] if init_type(document) == wanted["type"] else replace(document, "/model/init", wanted)


def relu_kaiming(document: dict[str, Any]) -> list[Op]:
    """ReLU with Kaiming init: what the notes use instead of a saturating activation (003, 004)."""
    ops = replace(document, "/model/activation", {"type": "relu"})
    return ops + ([] if init_type(document) == "kaiming" else replace(document, "/model/init", {"type": "kaiming"}))


def has_scaling(document: dict[str, Any]) -> bool:
    steps = value_at(document, "/data/preprocess", [])
    return any(step.get("type") in SCALING_STEPS or step.get("whiten") for step in steps)


def standardize_inputs(document: dict[str, Any]) -> list[Op]:
    """Add ``standardize`` (training-split statistics) to the preprocessing when nothing scales the inputs."""
    return [] if has_scaling(document) else append(document, "/data/preprocess", {"type": "standardize"})


def regularize(document: dict[str, Any]) -> list[Op]:
    """Dropout 0.5 where the model has a dropout field and less, and L2 ten times stronger."""
    ops = []
    dropout = value_at(document, "/model/dropout")
    if isinstance(dropout, int | float) and dropout < t.DROPOUT:
        ops += replace(document, "/model/dropout", t.DROPOUT)
    l2 = value_at(document, "/regularization/l2")
    if isinstance(l2, int | float):
        ops += replace(document, "/regularization/l2", max(_round(l2 * 10), t.L2_FLOOR))
    return ops
