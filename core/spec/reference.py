"""The README's spec reference, generated from the registries and the schema (so it cannot drift:
a test compares the README with this output)."""

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from core.data.augment import AUGMENTATIONS
from core.data.preprocess import PREPROCESSORS
from core.data.sources import SOURCES
from core.data.split import SplitSpec
from core.nn.activations import ACTIVATIONS
from core.nn.inits import INITS
from core.nn.layers import LAYERS
from core.nn.models import MODELS
from core.optim.losses import LOSSES
from core.optim.optimizers import OPTIMIZERS
from core.optim.schedules import SCHEDULES
from core.registry import SpecRegistry
from core.spec.schema import (
    DataSpec,
    DiagnosticsSpec,
    EarlyStoppingSpec,
    ExperimentSpec,
    RegularizationSpec,
    ResourcesSpec,
)
from core.spec.sweep import DISTRIBUTIONS, EarlyStopSpec, SweepSpec

SECTIONS: list[tuple[str, SpecRegistry]] = [
    ("`data.source`", SOURCES),
    ("`data.preprocess[]`", PREPROCESSORS),
    ("`data.augment[]`", AUGMENTATIONS),
    ("`model`", MODELS),
    ("`model.layers[]` (cnn, cnn_rnn, sequential, residual)", LAYERS),
    ("`activation` (model default, or a layer's `fn`)", ACTIVATIONS),
    ("`model.init`", INITS),
    ("`loss`", LOSSES),
    ("`optimizer`", OPTIMIZERS),
    ("`schedule`", SCHEDULES),
]
OBJECTS: list[tuple[str, type[BaseModel]]] = [
    ("the spec's top level", ExperimentSpec),
    ("`data`", DataSpec),
    ("`data.split`", SplitSpec),
    ("`regularization`", RegularizationSpec),
    ("`regularization.early_stopping`", EarlyStoppingSpec),
    ("`diagnostics`", DiagnosticsSpec),
    ("`resources`", ResourcesSpec),
    ("`sweep`", SweepSpec),
    ("`sweep.early_stop`", EarlyStopSpec),
]


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return f"`{value.model_dump(mode='json').get('type', type(value).__name__)}`"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "`[" + ", ".join(v.model_dump(mode="json").get("type", "") for v in value) + "]`"
    return f"`{value!r}`".replace("None", "null").replace("True", "true").replace("False", "false")


def _fields(model: type[BaseModel]) -> str:
    parts = [f"`{name}` = {_default(field)}" for name, field in model.model_fields.items() if name != "type"]
    return "; ".join(parts) or "—"


def _doc(model: type[BaseModel]) -> str:
    first_paragraph = (model.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first_paragraph.split()).replace("|", "\\|")


def spec_reference() -> str:
    """Markdown: every object's fields with defaults, and every registered type of every kind."""
    lines: list[str] = []
    for title, model in OBJECTS:
        lines += [f"#### {title}", "", _fields(model), ""]
    for title, registry in SECTIONS:
        lines += [f"#### {title}", "", "| type | fields (default) | what it does |", "|---|---|---|"]
        for name in registry.names():
            spec_class = registry.get(name)
            lines.append(f"| `{name}` | {_fields(spec_class)} | {_doc(spec_class)} |")
        lines.append("")
    lines += ["#### `sweep.parameters` values", "", "a list of choices, or:", ""]
    lines += ["| type | fields (default) | what it does |", "|---|---|---|"]
    for distribution in DISTRIBUTIONS:
        name = distribution.model_fields["type"].default
        lines.append(f"| `{name}` | {_fields(distribution)} | {_doc(distribution)} |")
    lines.append("")
    return "\n".join(lines)
