"""Validation in two stages: the document against the schema, then against its data
(classes, shapes, augmentations). ``plan_experiment`` backs both `trainyard validate` and training."""

import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError

from core.data.dataset import Dataset
from core.nn.build import LayerRow
from core.nn.models import build_model
from core.spec.errors import SpecError, SpecInvalid, from_validation_error
from core.spec.schema import ExperimentSpec


def parse_spec(document: Any) -> ExperimentSpec:
    """The spec with defaults filled in, or SpecInvalid with a pointer for every problem."""
    if not isinstance(document, dict):
        raise SpecInvalid([SpecError("", "the spec must be a JSON object")])
    try:
        return ExperimentSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecInvalid(from_validation_error(exc, document, ExperimentSpec)) from None


def output_units(spec: ExperimentSpec, data: Dataset) -> int:
    if spec.task == "classification":
        return len(data.classes or [])
    if spec.task == "binary":
        return 1
    return 1 if data.y.dim() == 1 else data.y.shape[1]


@dataclass
class Plan:
    """A spec checked against its data: what will be built and trained."""

    spec: ExperimentSpec
    data: Dataset
    outputs: int
    layer_table: list[LayerRow]
    params: int

    def memory_estimate_bytes(self) -> int:
        """Weights, gradients and optimizer state, plus forward activations kept for backward."""
        states = self.spec.optimizer.state_per_weight
        activations = sum(math.prod(row.output_shape) for row in self.layer_table)
        return 4 * (self.params * (2 + states) + 2 * activations * self.spec.data.batch_size)

    def report(self) -> dict[str, Any]:
        return {
            "valid": True,
            "spec": self.spec.model_dump(mode="json"),
            "input_shape": list(self.data.sample_shape),
            "outputs": self.outputs,
            "samples": len(self.data),
            "layers": [row.as_dict() for row in self.layer_table],
            "params": self.params,
            "flops_per_sample": sum(row.flops for row in self.layer_table if "." not in row.name),
            "memory_estimate_bytes": self.memory_estimate_bytes(),
        }


def plan_experiment(spec: ExperimentSpec) -> Plan:
    """Load the data and check the spec against it; raises SpecInvalid naming the field or layer."""
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    errors = [
        SpecError(
            f"/data/augment/{i}/type",
            f"{aug.type!r} does not apply to {data.kind} data",
            "it applies to " + " and ".join(aug.kinds) + " data",
        )
        for i, aug in enumerate(spec.data.augment)
        if data.kind not in aug.kinds
    ]
    if errors:
        raise SpecInvalid(errors)
    outputs = output_units(spec, data)
    with torch.device("meta"):
        model, rows = build_model(spec.model, data.sample_shape, outputs, count_flops=True)
    return Plan(spec, data, outputs, rows, sum(p.numel() for p in model.parameters()))


def validate_document(document: Any) -> dict[str, Any]:
    """The validation report: the resolved spec and layer table, or the errors."""
    try:
        return plan_experiment(parse_spec(document)).report()
    except SpecInvalid as exc:
        return {"valid": False, "errors": [e.as_dict() for e in exc.errors]}
