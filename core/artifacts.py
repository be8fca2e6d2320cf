"""A run's folder: weights and fitted preprocessing (safetensors), the resolved spec, metrics
(JSON lines) and the summary. ``load_trained`` reads it back for predictions; nothing is unpickled."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.data.preprocess import apply_preprocessing
from core.engine.events import Callback, State
from core.engine.run import RunResult
from core.nn.models import build_model
from core.spec.errors import SpecError, SpecInvalid
from core.spec.schema import ExperimentSpec

WEIGHTS = "model.safetensors"
PREPROCESSING = "preprocessing.safetensors"
SPEC = "spec.json"
META = "meta.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


class MetricsFile(Callback):
    """Appends every synced metric point to ``metrics.jsonl`` in the run folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / METRICS
        self.path.write_text("")

    def on_metrics(self, state: State) -> None:
        with self.path.open("a") as out:
            out.writelines(json.dumps(point.as_dict()) + "\n" for point in state.new_points)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def save_run(folder: Path, result: RunResult) -> None:
    """Write the trained model, its preprocessing, the resolved spec and the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_cpu(result.model.state_dict()), folder / WEIGHTS)
    save_file(_cpu(result.splits.fitted_preprocessing), folder / PREPROCESSING)
    spec = result.plan.spec
    (folder / SPEC).write_text(spec.model_dump_json(indent=2))
    meta = {
        "input_shape": list(result.plan.data.sample_shape),
        "outputs": result.plan.outputs,
        "classes": result.plan.data.classes,
        "task": spec.task,
    }
    (folder / META).write_text(json.dumps(meta, indent=2))
    (folder / SUMMARY).write_text(json.dumps(result.summary(), indent=2))


@dataclass
class TrainedModel:
    """A trained network with the exact preprocessing of its training run."""

    spec: ExperimentSpec
    model: torch.nn.Module
    fitted_preprocessing: dict[str, torch.Tensor]
    input_shape: tuple[int, ...]
    classes: list[str] | None

    def inputs_tensor(self, inputs: list[Any]) -> torch.Tensor:
        """Raw inputs (a list of samples) as a float tensor, or SpecInvalid naming the first bad row."""
        expected = list(self.input_shape)
        for index, row in enumerate(inputs):
            try:
                shape = list(np.shape(np.asarray(row, dtype=np.float32)))
            except (TypeError, ValueError):
                shape = None
            if shape != expected and not (expected == [1] and shape == []):
                raise SpecInvalid(
                    [
                        SpecError(
                            f"/inputs/{index}",
                            f"expected a sample of shape {expected}, "
                            f"got {shape if shape is not None else 'a non-numeric value'}",
                        )
                    ]
                )
        return torch.as_tensor(np.asarray(inputs, dtype=np.float32)).reshape(len(inputs), *self.input_shape)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> dict[str, Any]:
        """Predictions for raw inputs (N, *input_shape): labels or values, and class probabilities."""
        x = apply_preprocessing(self.spec.data.preprocess, self.fitted_preprocessing, inputs.float())
        output = self.model(x)
        if self.spec.task == "regression":
            values = output.squeeze(-1) if output.shape[-1] == 1 else output
            return {"predictions": values.tolist()}
        if self.spec.task == "binary":
            positive = torch.sigmoid(output.squeeze(-1))
            probabilities = torch.stack([1 - positive, positive], dim=-1)
        else:
            probabilities = torch.softmax(output, dim=-1)
        labels = self.classes or [str(i) for i in range(probabilities.shape[-1])]
        return {
            "predictions": [labels[i] for i in probabilities.argmax(-1).tolist()],
            "probabilities": probabilities.tolist(),
        }


def load_trained(folder: Path) -> TrainedModel:
    """Rebuild the model from the stored spec and load its weights (safetensors only)."""
    spec = ExperimentSpec.model_validate_json((folder / SPEC).read_text())
    meta = json.loads((folder / META).read_text())
    model, _ = build_model(spec.model, tuple(meta["input_shape"]), meta["outputs"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    model.eval()
    return TrainedModel(spec, model, load_file(folder / PREPROCESSING), tuple(meta["input_shape"]), meta["classes"])
