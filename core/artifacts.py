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
from core.data.text import Tokenizer
from core.engine.events import Callback, State
from core.engine.run import KFoldResult, RunResult
from core.nn.models import build_model
from core.spec.errors import SpecError, SpecInvalid
from core.spec.schema import ExperimentSpec

WEIGHTS = "model.safetensors"
PREPROCESSING = "preprocessing.safetensors"
SPEC = "spec.json"
META = "meta.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TOKENIZER = "tokenizer.json"


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
    data = result.plan.data
    meta = {
        "input_shape": list(data.sample_shape),
        "outputs": result.plan.outputs,
        "classes": data.classes,
        "task": spec.task,
        "model_input_shape": list(result.plan.input_shape or data.sample_shape),
        "kind": data.kind,
        "vocab_size": result.plan.vocab_size,
        "data_report": data.report,
    }
    (folder / META).write_text(json.dumps(meta, indent=2))
    if data.tokenizer is not None:
        (folder / TOKENIZER).write_text(data.tokenizer.to_json())
    (folder / SUMMARY).write_text(json.dumps(result.summary(), indent=2))


def save_kfold(folder: Path, result: KFoldResult) -> None:
    """Each fold's run in ``fold_N/`` and the cross-validation summary (folds, mean, std) at the top."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, fold in enumerate(result.folds, start=1):
        save_run(folder / f"fold_{i}", fold)
    (folder / SPEC).write_text(result.plan.spec.model_dump_json(indent=2))
    (folder / SUMMARY).write_text(json.dumps(result.summary(), indent=2))


@dataclass
class TrainedModel:
    """A trained network with the exact preprocessing of its training run."""

    spec: ExperimentSpec
    model: torch.nn.Module
    fitted_preprocessing: dict[str, torch.Tensor]
    input_shape: tuple[int, ...]
    classes: list[str] | None
    tokenizer: Tokenizer | None = None  # text models: raw strings in, token ids to the model

    def inputs_tensor(self, inputs: list[Any]) -> torch.Tensor:
        """Raw inputs (a list of samples; strings for a text model) as a tensor, or SpecInvalid
        naming the first bad row."""
        if self.tokenizer is not None:
            for index, row in enumerate(inputs):
                if not isinstance(row, str):
                    raise SpecInvalid([SpecError(f"/inputs/{index}", "a text model takes strings")])
            return self.tokenizer.encode(list(inputs))
        expected = list(self.input_shape)
        try:  # the common case in one conversion; a failure is looked for row by row
            array = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError):
            array = None
        if array is not None and (list(array.shape[1:]) == expected or (expected == [1] and array.ndim == 1)):
            finite = np.isfinite(array.reshape(len(inputs), -1)).all(axis=1)
            if not finite.all():  # null reads as NaN
                pointer = f"/inputs/{int(np.argmin(finite))}"
                raise SpecInvalid([SpecError(pointer, "values must be finite numbers (not null, NaN or inf)")])
            return torch.from_numpy(array).reshape(len(inputs), *self.input_shape)
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
        raise SpecInvalid([SpecError("/inputs", f"samples of mixed shapes; each must be {expected} (or a number)")])

    def outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs (N, *input_shape) through the stored preprocessing and the model: class
        probabilities (N, C), or regression values."""
        if self.tokenizer is None:
            inputs = inputs.float()
        output = self.model(apply_preprocessing(self.spec.data.preprocess, self.fitted_preprocessing, inputs))
        if self.spec.task == "regression":
            return output.squeeze(-1) if output.shape[-1] == 1 else output
        if self.spec.task == "binary":
            positive = torch.sigmoid(output.squeeze(-1))
            return torch.stack([1 - positive, positive], dim=-1)
        return torch.softmax(output, dim=-1)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> dict[str, Any]:
        """Predictions for raw inputs (N, *input_shape): labels or values, and class probabilities."""
        outputs = self.outputs(inputs)
        if self.spec.task == "regression":
            return {"predictions": outputs.tolist()}
        labels = self.classes or [str(i) for i in range(outputs.shape[-1])]
        return {
            "predictions": [labels[i] for i in outputs.argmax(-1).tolist()],
            "probabilities": outputs.tolist(),
        }


def load_trained(folder: Path) -> TrainedModel:
    """Rebuild the model from the stored spec and load its weights (safetensors only)."""
    spec = ExperimentSpec.model_validate_json((folder / SPEC).read_text())
    meta = json.loads((folder / META).read_text())
    model_input = tuple(meta.get("model_input_shape") or meta["input_shape"])
    model, _ = build_model(spec.model, model_input, meta["outputs"], vocab_size=meta.get("vocab_size"))
    model.load_state_dict(load_file(folder / WEIGHTS))
    model.eval()
    tokenizer = Tokenizer.from_json((folder / TOKENIZER).read_text()) if (folder / TOKENIZER).exists() else None
    return TrainedModel(
        spec, model, load_file(folder / PREPROCESSING), tuple(meta["input_shape"]), meta["classes"], tokenizer
    )
