"""The experiment spec (SPEC.md): pydantic models, defaults and the cross-field rules that need no data."""

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from core.data.augment import AUGMENTATIONS
from core.data.preprocess import PREPROCESSORS
from core.data.sources import SOURCES
from core.data.split import SplitSpec
from core.errors import SpecError, SpecInvalid
from core.nn.models import MLP, MODELS
from core.optim.losses import DEFAULT_LOSS, LOSSES
from core.optim.optimizers import OPTIMIZERS, Adam
from core.optim.schedules import SCHEDULES, WarmupCosine
from core.registry import SpecModel
from core.spec.pointers import from_validation_error
from core.spec.precision import Precision
from core.spec.sweep import SweepSpec
from core.spec.trials import trial_errors
from core.task import Monitor, Task


class DataSpec(SpecModel):
    source: SOURCES.union()  # type: ignore[valid-type]
    split: SplitSpec = Field(default_factory=SplitSpec)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    preprocess: list[PREPROCESSORS.union()] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [PREPROCESSORS.get("standardize")()], max_length=16
    )
    augment: list[AUGMENTATIONS.union()] = Field(default_factory=list, max_length=16)  # type: ignore[valid-type]
    target_preprocess: list[PREPROCESSORS.union()] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=16,
        description="regression only: invertible steps on the targets, inverted at prediction",
    )

    @model_validator(mode="after")
    def _target_steps_are_invertible(self) -> "DataSpec":
        for index, step in enumerate(self.target_preprocess):
            if not step.invertible:
                fitting = [name for name in PREPROCESSORS.names() if PREPROCESSORS.get(name).invertible]
                raise PydanticCustomError(
                    "spec_rule",
                    "'{step}' does not apply to targets: it cannot be inverted back to their units",
                    {
                        "step": step.type,
                        "path": ["data", "target_preprocess", index, "type"],
                        "hint": "use " + " or ".join(repr(n) for n in fitting),
                    },
                )
        return self


class EarlyStoppingSpec(SpecModel):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: Monitor = "val_loss"
    patience: int = Field(5, ge=0)
    mode: Literal["min", "max"] | None = Field(None, description="defaults to max for accuracy, min otherwise")
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class RegularizationSpec(SpecModel):
    """Penalties added to the loss on weights (matrices and kernels, not biases or norms)."""

    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0001, ge=0.0)
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)


class DiagnosticsSpec(SpecModel):
    """What the notes tell a learner to look at, measured every ``every_n_steps`` steps."""

    activations: bool = True
    gradients: bool = True
    every_n_steps: int = Field(20, ge=1)


class ResourcesSpec(SpecModel):
    """What a run needs of the worker that trains it."""

    devices: int = Field(
        1,
        ge=1,
        description="devices the run trains on at once, one process each (GPUs; on a CPU worker, gloo ranks): "
        "only a worker with at least this many takes it",
    )


class ExperimentSpec(SpecModel):
    name: str = Field("experiment", min_length=1, max_length=200)
    task: Task = "classification"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    epochs: int = Field(30, ge=1, le=100_000)
    data: DataSpec
    model: MODELS.union() = Field(default_factory=MLP)  # type: ignore[valid-type]
    loss: LOSSES.union() | None = None  # type: ignore[valid-type]
    optimizer: OPTIMIZERS.union() = Field(default_factory=Adam)  # type: ignore[valid-type]
    schedule: SCHEDULES.union() = Field(default_factory=WarmupCosine)  # type: ignore[valid-type]
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    max_runtime_s: float | None = Field(
        None,
        gt=0.0,
        description="fail the run after this much training time, every attempt counted; the folds of a k-fold "
        "run share it, a sweep's trials each have their own",
    )
    sweep: SweepSpec | None = Field(None, description="search over spec values: the run becomes a parent of trials")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="what the run needs of its worker")
    precision: Precision = Field(
        "fp32",
        description="the forward pass and loss: 'fp32', or autocast to 'bf16', or to 'fp16' with a GradScaler "
        "(CUDA only); refused where the device cannot compute in it",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="capture the training step with torch.compile: 'auto' on CUDA (CUDA graphs), 'on' on any "
        "device, 'off' never; a model that cannot be captured trains eagerly, the reason in its summary",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "ExperimentSpec":
        if self.loss is None:
            self.loss = DEFAULT_LOSS[self.task]()
        elif self.task not in self.loss.tasks:
            fitting = [name for name in LOSSES.names() if self.task in LOSSES.get(name).tasks]
            raise PydanticCustomError(
                "spec_rule",
                "loss '{loss}' does not fit task '{task}'",
                {
                    "loss": self.loss.type,
                    "task": self.task,
                    "path": ["loss", "type"],
                    "hint": "use " + " or ".join(repr(n) for n in fitting),
                },
            )
        if self.data.target_preprocess and self.task != "regression":
            raise PydanticCustomError(
                "spec_rule",
                "target_preprocess scales regression targets; task '{task}' has class labels",
                {
                    "task": self.task,
                    "path": ["data", "target_preprocess"],
                    "hint": "remove it or use task 'regression'",
                },
            )
        stopping = self.regularization.early_stopping
        asked = "early_stopping" in self.regularization.model_fields_set
        if stopping is not None and not asked and not self.data.split.has_validation:
            self.regularization.early_stopping = stopping = None  # the default watches a validation split
        if stopping is not None:
            if stopping.monitor.startswith("val_") and not self.data.split.has_validation:
                raise PydanticCustomError(
                    "spec_rule",
                    "early stopping monitors '{monitor}' but there is no validation split",
                    {
                        "monitor": stopping.monitor,
                        "path": ["regularization", "early_stopping", "monitor"],
                        "hint": "set data.split.validation > 0 or monitor 'train_loss'",
                    },
                )
            if stopping.monitor.endswith("accuracy") and self.task == "regression":
                raise PydanticCustomError(
                    "spec_rule",
                    "a regression task has no accuracy to monitor",
                    {"path": ["regularization", "early_stopping", "monitor"], "hint": "monitor 'val_loss'"},
                )
            wanted = "max" if stopping.monitor.endswith("accuracy") else "min"
            stopping.mode = stopping.mode or wanted
            if stopping.mode != wanted:
                raise PydanticCustomError(
                    "spec_rule",
                    "'{monitor}' improves when it goes {dir}; mode must be '{wanted}'",
                    {
                        "monitor": stopping.monitor,
                        "dir": "up" if wanted == "max" else "down",
                        "wanted": wanted,
                        "path": ["regularization", "early_stopping", "mode"],
                    },
                )
        if self.sweep is not None:
            self._sweep_rules(self.sweep)
        if getattr(self.schedule, "monitor", "").startswith("val_") and not self.data.split.has_validation:
            raise PydanticCustomError(
                "spec_rule",
                "reduce_on_plateau monitors val_loss but there is no validation split",
                {"path": ["schedule", "monitor"], "hint": "monitor 'train_loss'"},
            )
        return self

    def _sweep_rules(self, sweep: SweepSpec) -> None:
        if self.data.split.kfold:
            raise PydanticCustomError(
                "spec_rule",
                "a sweep's trials cannot be k-fold runs",
                {"path": ["sweep"], "hint": "use a validation split, or sweep without data.split.kfold"},
            )
        if sweep.metric.startswith("val_") and not self.data.split.has_validation:
            raise PydanticCustomError(
                "spec_rule",
                "the sweep compares trials on '{metric}' but there is no validation split",
                {"metric": sweep.metric, "path": ["sweep", "metric"], "hint": "set data.split.validation > 0"},
            )
        if sweep.metric.endswith("accuracy") and self.task == "regression":
            raise PydanticCustomError(
                "spec_rule",
                "a regression task has no accuracy to compare trials on",
                {"path": ["sweep", "metric"], "hint": "use 'val_loss'"},
            )


def _parse(document: Any) -> ExperimentSpec:
    if not isinstance(document, dict):
        raise SpecInvalid([SpecError("", "the spec must be a JSON object")])
    try:
        return ExperimentSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecInvalid(from_validation_error(exc, document, ExperimentSpec)) from None


def parse_spec(document: Any) -> ExperimentSpec:
    """The spec with defaults filled in, or SpecInvalid with a pointer for every problem. A sweep's
    trials are checked too: each parameter path must exist and each value must be one the schema
    takes (the errors point into ``/sweep/parameters``)."""
    spec = _parse(document)
    if spec.sweep is not None:
        errors = trial_errors(document, spec, _parse)
        if errors:
            raise SpecInvalid(errors)
    return spec
