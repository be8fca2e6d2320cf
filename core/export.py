"""ONNX export of a trained model, for serving it outside Trainyard: raw samples in (the stored
preprocessing is part of the graph), class probabilities or regression values out, any batch size."""

import tempfile
import threading
from pathlib import Path

import torch

from core.artifacts import TrainedModel

INPUT, PROBABILITIES, VALUES = "inputs", "probabilities", "values"
# The exporter traces through torch's compiler stack, whose state is global to the process: two
# exports at once broke each other (5 of 6 concurrent first exports failed, and at times every
# later one), so a process exports one model at a time.
_EXPORTING = threading.Lock()


class ExportUnsupported(Exception):
    """The model cannot be expressed as an ONNX graph; the message says why."""


class ExportFailed(Exception):
    """The exporter failed on a model it should handle (its bug, not the model's); the message says how."""


class _Served(torch.nn.Module):
    def __init__(self, trained: TrainedModel) -> None:
        super().__init__()
        self.model = trained.model  # registered: its weights become the graph's initializers
        self.trained = trained

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.trained.outputs(inputs)


def export_onnx(trained: TrainedModel, path: Path) -> None:
    """Write ``path`` (atomically, once: a caller that waited finds it written) or raise
    ExportUnsupported (the model has a part ONNX cannot hold) or ExportFailed (the exporter's own
    error; its state is reset so the next export starts clean)."""
    if trained.tokenizer is not None:
        raise ExportUnsupported("a text model's tokenizer is Python code, not part of an ONNX graph")
    with _EXPORTING:
        if not path.is_file():
            _export(trained, path)


def _export(trained: TrainedModel, path: Path) -> None:
    example = torch.zeros(2, *trained.input_shape)
    output = VALUES if trained.spec.task == "regression" else PROBABILITIES
    try:
        program = torch.onnx.export(
            _Served(trained).eval(),
            (example,),
            dynamo=True,
            verbose=False,
            input_names=[INPUT],
            output_names=[output],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    except Exception as exc:  # the exporter's own errors are many and unrelated to the request
        torch._dynamo.reset()  # what it traced must not poison the next export
        raise ExportFailed(f"the ONNX exporter failed: {type(exc).__name__}: {exc}") from exc
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as partial:
        pass  # a name of this export's own: two exports of one run never write the same file
    program.save(partial.name)
    Path(partial.name).replace(path)
