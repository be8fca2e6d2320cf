"""The ``sweep`` field (SPEC.md): which spec values to search over, how, and how to stop poor
trials early. Each trial is the base spec with its parameters applied (``core.spec.trials``)."""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from core.registry import SpecModel
from core.task import Monitor, improves_when


class Uniform(SpecModel):
    """A float drawn uniformly from [low, high]."""

    type: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if not self.low < self.high:
            raise PydanticCustomError("spec_rule", "high must be greater than low", {"path_tail": ["high"]})
        return self


class LogUniform(Uniform):
    """A float drawn uniformly on a log scale from [low, high] (learning rates, weight decay)."""

    type: Literal["log_uniform"] = "log_uniform"  # type: ignore[assignment]
    low: float = Field(gt=0.0)


class IntRange(SpecModel):
    """An integer from low to high inclusive, in steps of ``step``."""

    type: Literal["int"] = "int"
    low: int
    high: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "IntRange":
        if not self.low < self.high:
            raise PydanticCustomError("spec_rule", "high must be greater than low", {"path_tail": ["high"]})
        return self


DISTRIBUTIONS = (Uniform, LogUniform, IntRange)
Distribution = Annotated[Uniform | LogUniform | IntRange, Field(discriminator="type")]
Choices = Annotated[list[Any], Field(min_length=1, max_length=1000)]


def _list_or_object(value: Any) -> Any:
    """Refuse, with one error, a parameter value that is neither a list of choices nor a distribution."""
    if isinstance(value, list | dict):
        return value
    types = "|".join(f'"{kind.model_fields["type"].default}"' for kind in DISTRIBUTIONS)
    raise PydanticCustomError(
        "spec_rule",
        f'a list of values or a distribution ({{"type": {types}, "low", "high"}})',
        {"hint": f"for one value, write [{json.dumps(value)}]"},
    )


Parameter = Annotated[
    Annotated[Choices, Tag("choices")] | Annotated[Distribution, Tag("distribution")],
    Discriminator(lambda value: "distribution" if isinstance(value, dict | BaseModel) else "choices"),
    BeforeValidator(_list_or_object),
]
"""A parameter's values: a JSON list is its choices, a JSON object a distribution (read only as one)."""

MAX_TRIALS = 1000


class EarlyStopSpec(SpecModel):
    """Stop poor trials at rungs: a trial that reaches epoch ``grace_epochs × reduction_factor^k``
    goes on only if its metric is in the top 1/``reduction_factor`` of the trials seen there."""

    type: Literal["asha", "hyperband"] = "asha"
    grace_epochs: int = Field(1, ge=1, description="epochs every trial trains before it can be stopped")
    reduction_factor: int = Field(3, ge=2, le=100)


class SweepSpec(SpecModel):
    method: Literal["grid", "random", "tpe"] = "random"
    parameters: dict[str, Parameter] = Field(
        min_length=1, max_length=32, description="dotted path or JSON pointer → a list of choices or a distribution"
    )
    trials: int = Field(10, ge=1, le=MAX_TRIALS, description="random and tpe: how many; grid tries every combination")
    metric: Monitor = "val_loss"
    mode: Literal["min", "max"] | None = Field(None, description="defaults to max for accuracy, min otherwise")
    max_concurrent: int = Field(4, ge=1, le=256, description="trials training at once")
    early_stop: EarlyStopSpec | None = None

    @model_validator(mode="after")
    def _rules(self) -> "SweepSpec":
        if self.method == "grid":
            for key, values in self.parameters.items():
                if not isinstance(values, list):
                    raise PydanticCustomError(
                        "spec_rule",
                        "a grid sweep takes lists of values; '{key}' is a {kind} distribution",
                        {
                            "key": key,
                            "kind": values.type,
                            "path_tail": ["parameters", key],
                            "hint": "list the values, or use method 'random' or 'tpe'",
                        },
                    )
            if self.trial_count > MAX_TRIALS:
                raise PydanticCustomError(
                    "spec_rule",
                    "the grid has {count} combinations; a sweep runs at most {most} trials",
                    {
                        "count": self.trial_count,
                        "most": MAX_TRIALS,
                        "path_tail": ["parameters"],
                        "hint": "list fewer values, or use method 'random' or 'tpe' with 'trials'",
                    },
                )
        wanted = improves_when(self.metric)
        self.mode = self.mode or wanted
        if self.mode != wanted:
            raise PydanticCustomError(
                "spec_rule",
                "'{metric}' improves when it goes {dir}; mode must be '{wanted}'",
                {
                    "metric": self.metric,
                    "dir": "up" if wanted == "max" else "down",
                    "wanted": wanted,
                    "path_tail": ["mode"],
                },
            )
        return self

    @property
    def trial_count(self) -> int:
        """How many trials the sweep runs: every grid combination, else ``trials``."""
        if self.method != "grid":
            return self.trials
        count = 1
        for values in self.parameters.values():
            count *= len(values)  # type: ignore[arg-type]
        return count
