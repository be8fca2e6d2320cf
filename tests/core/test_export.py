"""ONNX export: the graph (preprocessing included) answers like the trained model, for any batch
size; a model it cannot express is refused with the reason; first exports at once all succeed (one
runs at a time); an exporter failure is the exporter's, and the next export starts clean."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch

from core.artifacts import TrainedModel, load_trained
from core.export import ExportFailed, ExportUnsupported, export_onnx
from tests.core.helpers import spec_document, train

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "cnn, minmax": json.loads((ROOT / "examples" / "cnn_digits.json").read_text()) | {"epochs": 1},
    "regression, pca": spec_document(
        task="regression",
        data={"source": {"type": "builtin", "name": "diabetes"}, "preprocess": [{"type": "pca", "components": 5}]},
        loss={"type": "mse"},
    ),
}


def trained_in(folder: Path, document: dict[str, Any]) -> TrainedModel:
    train(document).save(folder)
    return load_trained(folder)


@pytest.mark.parametrize("case", CASES)
def test_the_exported_graph_answers_like_the_model(case: str, tmp_path: Path) -> None:
    trained = trained_in(tmp_path, CASES[case])
    export_onnx(trained, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    for rows in (1, 5):  # the batch dimension is free
        raw = torch.rand(rows, *trained.input_shape) * 10
        (exported,) = session.run(None, {"inputs": raw.numpy()})
        with torch.no_grad():
            assert np.allclose(exported, trained.outputs(raw).numpy(), atol=1e-4)


def test_a_text_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    document = json.loads((ROOT / "examples" / "toy_text_lstm.json").read_text())
    document["epochs"] = 1
    document["data"]["source"]["n_samples"] = 200
    trained = trained_in(tmp_path, document)
    with pytest.raises(ExportUnsupported, match="tokenizer"):
        export_onnx(trained, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_first_exports_at_once_all_succeed_with_one_graph(tmp_path: Path) -> None:
    trained = trained_in(tmp_path, CASES["regression, pca"])
    path = tmp_path / "model.onnx"
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: export_onnx(trained, path), range(6)))  # each raises if its export failed
    assert path.is_file() and not list(tmp_path.glob("*.partial"))
    onnxruntime.InferenceSession(str(path))


def test_an_exporter_failure_is_not_the_models_and_the_next_export_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = trained_in(tmp_path, CASES["regression, pca"])
    real = torch.onnx.export

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an exporter bug")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportFailed, match="an exporter bug"):
        export_onnx(trained, tmp_path / "model.onnx")
    monkeypatch.setattr(torch.onnx, "export", real)
    export_onnx(trained, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").is_file()
