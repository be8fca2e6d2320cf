"""Planning: a parsed spec checked against its data (classes, shapes, augmentations), and the
model built on the meta device for its layer table. ``plan_experiment`` backs `trainyard
validate`, the API's dry run and submission, and training."""

import math
from dataclasses import dataclass
from typing import Any

import torch

from core.data.dataset import Dataset
from core.data.preprocess import PreprocessShapeError
from core.data.split import split_indices
from core.data.text import encode_dataset
from core.engine.precision import check_precision
from core.errors import SpecError, SpecInvalid
from core.nn.build import LayerRow
from core.nn.models import build_model
from core.spec.schema import ExperimentSpec, parse_spec
from core.spec.trials import sweep_work


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
    input_shape: tuple[int, ...] = ()  # the model's input: the sample shape after preprocessing
    vocab_size: int | None = None  # text data: the vocabulary the embedding indexes

    def memory_estimate_bytes(self) -> int:
        """Weights, gradients and optimizer state, plus forward activations kept for backward."""
        states = self.spec.optimizer.state_per_weight
        activations = sum(math.prod(row.output_shape) for row in self.layer_table)
        return 4 * (self.params * (2 + states) + 2 * activations * self.spec.data.batch_size)

    def model_meta(self) -> dict[str, Any]:
        """What a trained model needs to be rebuilt and fed: shapes, classes, vocabulary (``meta.json``)."""
        return {
            "input_shape": list(self.data.sample_shape),
            "outputs": self.outputs,
            "classes": self.data.classes,
            "task": self.spec.task,
            "model_input_shape": list(self.input_shape or self.data.sample_shape),
            "kind": self.data.kind,
            "vocab_size": self.vocab_size,
            "data_report": self.data.report,
        }

    def sweep_report(self) -> dict[str, Any] | None:
        """A sweep's dry run (None without one): how it searches, how many trials, and the epochs ×
        samples of them all."""
        sweep = self.spec.sweep
        if sweep is None:
            return None
        return {
            "method": sweep.method,
            "metric": sweep.metric,
            "mode": sweep.mode,
            "trials": sweep.trial_count,
            "epochs_x_samples": sweep_work(self.spec, len(self.data)),
        }

    def report(self) -> dict[str, Any]:
        return {
            "valid": True,
            "spec": self.spec.model_dump(mode="json"),
            "input_shape": list(self.data.sample_shape),
            "model_input_shape": list(self.input_shape or self.data.sample_shape),
            "data": {
                "kind": self.data.kind,
                "samples": len(self.data),
                "vocabulary": self.vocab_size,
                "file": self.data.report,
            },
            "outputs": self.outputs,
            "samples": len(self.data),
            "layers": [row.as_dict() for row in self.layer_table],
            "params": self.params,
            "flops_per_sample": sum(row.flops for row in self.layer_table if "." not in row.name),
            "memory_estimate_bytes": self.memory_estimate_bytes(),
            "sweep": self.sweep_report(),
        }


def _encode_text(spec: ExperimentSpec, data: Dataset) -> Dataset:
    """Text as token ids, with the vocabulary built on the training split (all non-test rows for
    k-fold). Text takes no preprocessing: the default standardize is dropped (from the plan's own
    copy of the spec), an explicit one refused."""
    if "preprocess" not in spec.data.model_fields_set:
        spec.data.preprocess = []
    errors = [
        SpecError(f"/data/preprocess/{i}/type", f"{step.type!r} does not apply to text data (token ids)")
        for i, step in enumerate(spec.data.preprocess)
    ]
    if errors:
        raise SpecInvalid(errors)
    train, _, _ = split_indices(data, spec.data.split, seed=spec.seed, classify=spec.task != "regression")
    return encode_dataset(data, train, max_length=getattr(spec.data.source, "length", 64))


def _model_input_shape(spec: ExperimentSpec, data: Dataset) -> tuple[int, ...]:
    shape = data.sample_shape
    for i, step in enumerate(spec.data.preprocess):
        try:
            shape = step.output_shape(shape)
        except PreprocessShapeError as exc:
            where = f"/data/preprocess/{i}" + (f"/{exc.field}" if exc.field else "")
            raise SpecInvalid([SpecError(where, str(exc))]) from None
    return shape


def _augmentation_errors(spec: ExperimentSpec, data: Dataset, shape: tuple[int, ...]) -> list[SpecError]:
    """Augmentations that do not fit the data as the model sees it (after preprocessing)."""
    flattened = len(shape) == 1 and len(data.sample_shape) > 1
    kind = "tabular" if flattened else data.kind
    errors = []
    for i, aug in enumerate(spec.data.augment):
        if kind not in aug.kinds:
            why = f" (preprocessing flattens the {data.kind} samples into vectors)" if flattened else ""
            errors.append(
                SpecError(
                    f"/data/augment/{i}/type",
                    f"{aug.type!r} does not apply to {kind} data{why}",
                    "it applies to " + " and ".join(aug.kinds) + " data",
                )
            )
        elif not aug.available():
            errors.append(
                SpecError(f"/data/augment/{i}/type", f"{aug.type!r} needs the {aug.needs!r} package", "pip install it")
            )
    return errors


def _check_finite(data: Dataset) -> None:
    """Bad data fails validation, not training: every feature and target must be a finite number."""
    for name, values in (("features", data.x), ("targets", data.y)):
        if values.is_floating_point():
            bad = (~torch.isfinite(values.reshape(len(values), -1))).any(dim=1).nonzero().flatten()
            if len(bad):
                rows = ", ".join(str(i) for i in bad[:10].tolist())
                raise SpecInvalid(
                    [
                        SpecError(
                            "/data/source",
                            f"the {name} hold NaN or infinite values (as float32) in {len(bad)} row(s): {rows}",
                        )
                    ]
                )


def plan_experiment(spec: ExperimentSpec) -> Plan:
    """Load the data and check the spec against it; raises SpecInvalid naming the field or layer.
    The plan holds the resolved spec (a copy: ``spec`` itself is left as it was), with what the
    data decides filled in (text drops the default preprocessing; augmentations bound to the data).

    File and uploaded sources read through ``core.data.files.data_access`` (the allowed data root
    or the CLI's spec folder, and the resolver of uploaded ids)."""
    augment = [step.model_copy(deep=True) for step in spec.data.augment]  # bound to the data below
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"augment": augment})})
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    _check_finite(data)
    if data.kind == "text":
        data = _encode_text(spec, data)
    shape = _model_input_shape(spec, data)
    errors = _augmentation_errors(spec, data, shape)
    if errors:
        raise SpecInvalid(errors)
    for aug in spec.data.augment:
        aug.prepare(data)
    outputs = output_units(spec, data)
    vocab = len(data.tokenizer) if data.tokenizer is not None else None
    with torch.device("meta"):
        model, rows = build_model(spec.model, shape, outputs, count_flops=True, vocab_size=vocab)
    return Plan(spec, data, outputs, rows, sum(p.numel() for p in model.parameters()), shape, vocab)


def validate_document(document: Any, *, device: torch.device | None = None) -> dict[str, Any]:
    """The validation report: the resolved spec and layer table, or the errors; with ``device``,
    also what that device cannot train (its ``precision``)."""
    try:
        plan = plan_experiment(parse_spec(document))
        if device is not None:
            check_precision(plan.spec.precision, device)
        return plan.report()
    except SpecInvalid as exc:
        return {"valid": False, "errors": [e.as_dict() for e in exc.errors]}
