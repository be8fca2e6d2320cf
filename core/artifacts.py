"""A trained model in a run's folder (``core.run_folder`` names the files): ``save_model`` writes
the weights and fitted preprocessing of the features and, when scaled, of the targets
(safetensors), the resolved spec, what the data looked like and the summary; ``load_trained``
reads them back for predictions. Nothing is unpickled."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from core import durable
from core.data.preprocess import apply_preprocessing, invert_preprocessing
from core.data.text import Tokenizer
from core.errors import SpecError, SpecInvalid
from core.nn.models import build_model
from core.run_folder import META, PREPROCESSING, SPEC, SUMMARY, TARGET_PREPROCESSING, TOKENIZER, WEIGHTS
from core.spec.schema import ExperimentSpec
from core.task import fit_output


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def save_model(
    folder: Path,
    *,
    model: torch.nn.Module,
    fitted_preprocessing: dict[str, torch.Tensor],
    fitted_target_preprocessing: dict[str, torch.Tensor],
    spec: ExperimentSpec,
    meta: dict[str, Any],
    tokenizer: Tokenizer | None,
    summary: dict[str, Any],
) -> None:
    """Write a trained model, its preprocessing (of the features; of the targets when the spec
    scales them), the resolved spec, what the data looked like (``meta``: shapes, classes) and
    the summary to ``folder``, keeping what else it holds (metrics, checkpoints). The files are
    written in a temporary folder and moved in, the summary last: a save cut short (a full disk,
    a crash) leaves no half-written file, nor a summary next to an incomplete model."""
    files = {WEIGHTS: save(_cpu(model.state_dict())), PREPROCESSING: save(_cpu(fitted_preprocessing))}
    if spec.data.target_preprocess:
        files[TARGET_PREPROCESSING] = save(_cpu(fitted_target_preprocessing))
    files[SPEC] = spec.model_dump_json(indent=2).encode()
    files[META] = json.dumps(meta, indent=2).encode()
    if tokenizer is not None:
        files[TOKENIZER] = tokenizer.to_json().encode()
    files[SUMMARY] = json.dumps(summary, indent=2).encode()
    durable.replace_files(folder, files)


@dataclass
class TrainedModel:
    """A trained network with the exact preprocessing of its training run (and of its targets,
    inverted on the way out)."""

    spec: ExperimentSpec
    model: torch.nn.Module
    fitted_preprocessing: dict[str, torch.Tensor]
    input_shape: tuple[int, ...]
    classes: list[str] | None
    tokenizer: Tokenizer | None = None  # text models: raw strings in, token ids to the model
    fitted_target_preprocessing: dict[str, torch.Tensor] = field(default_factory=dict)

    def inputs_tensor(self, inputs: list[Any]) -> torch.Tensor:
        """Raw inputs (a list of samples, each shaped like a training sample or a flat row of its
        values in row-major order; strings for a text model) as a tensor, or SpecInvalid naming the
        first bad row."""
        if len(inputs) == 0:
            raise SpecInvalid([SpecError("/inputs", "no samples: give at least one")])
        if self.tokenizer is not None:
            for index, row in enumerate(inputs):
                if not isinstance(row, str):
                    raise SpecInvalid([SpecError(f"/inputs/{index}", "a text model takes strings")])
            return self.tokenizer.encode(list(inputs))
        expected = list(self.input_shape)
        size = int(np.prod(expected))  # a flat row of this many values is read in row-major order

        def fits(shape: list[int]) -> bool:
            return shape in (expected, [size]) or (size == 1 and shape == [])

        try:  # the common case in one conversion; a failure is looked for row by row
            array = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError):
            array = None
        if array is None or not fits(list(array.shape[1:])):
            rows = []
            for index, row in enumerate(inputs):
                try:
                    sample = np.asarray(row, dtype=np.float32)
                except (TypeError, ValueError):
                    sample = None
                if sample is None or not fits(list(sample.shape)):
                    flat = f" or a flat row of {size} values" if len(expected) > 1 else ""
                    got = list(sample.shape) if sample is not None else "a non-numeric value"
                    raise SpecInvalid(
                        [SpecError(f"/inputs/{index}", f"expected a sample of shape {expected}{flat}, got {got}")]
                    )
                rows.append(sample.reshape(size))
            array = np.stack(rows)
        array = array.reshape(len(inputs), size)
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():  # null reads as NaN
            pointer = f"/inputs/{int(np.argmin(finite))}"
            raise SpecInvalid([SpecError(pointer, "values must be finite numbers (not null, NaN or inf)")])
        return torch.from_numpy(array).reshape(len(inputs), *self.input_shape)

    def outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs (N, *input_shape) through the stored preprocessing and the model: class
        probabilities (N, C), or regression values in the targets' original units."""
        if self.tokenizer is None:
            inputs = inputs.float()
        output = self.model(apply_preprocessing(self.spec.data.preprocess, self.fitted_preprocessing, inputs))
        if self.spec.task == "regression":
            target_steps = self.spec.data.target_preprocess
            return invert_preprocessing(target_steps, self.fitted_target_preprocessing, fit_output(output))
        if self.spec.task == "binary":
            positive = torch.sigmoid(fit_output(output))
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
    targets = load_file(folder / TARGET_PREPROCESSING) if spec.data.target_preprocess else {}
    return TrainedModel(
        spec, model, load_file(folder / PREPROCESSING), tuple(meta["input_shape"]), meta["classes"], tokenizer, targets
    )
