"""Regression targets scaled by ``data.target_preprocess``: refused where it means nothing, fitted
on the training split only (per fold for k-fold), stored with the model, inverted at prediction
(ONNX too), and named by the divergence message of a regression whose targets are far from unit scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file

from core import run_folder
from core.artifacts import load_trained
from core.data.preprocess import PREPROCESSORS, apply_preprocessing, fit_preprocessing, invert_preprocessing
from core.data.split import split_indices
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import KFoldResult, prepare_splits, train_run
from core.engine.trainer import unscaled_targets
from core.export import export_onnx
from core.spec.schema import parse_spec
from tests.core.helpers import IRIS, spec_document, train

DIABETES = {"type": "builtin", "name": "diabetes"}
STANDARDIZE = [{"type": "standardize"}]
TARGET_STEPS = [name for name in PREPROCESSORS.names() if PREPROCESSORS.get(name).invertible]


def diabetes(epochs: int = 10, **data: Any) -> dict[str, Any]:
    """The issue's run: an MLP on diabetes (targets 25–346), MSE, plain SGD at lr 0.01."""
    return spec_document(
        task="regression",
        epochs=epochs,
        data={"source": DIABETES, "batch_size": 32, **data},
        loss={"type": "mse"},
        optimizer={"type": "sgd", "lr": 0.01},
    )


def errors_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    report = validate_document(document)
    assert not report["valid"]
    return report["errors"]


def test_default_is_no_target_step_and_only_invertible_steps_apply() -> None:
    assert parse_spec(diabetes()).data.target_preprocess == []
    assert set(TARGET_STEPS) == {"standardize", "minmax", "zero_center"}
    for name in ("pca", "zca_whiten"):
        (error,) = errors_of(diabetes(target_preprocess=[{"type": "minmax"}, {"type": name}]))
        assert error["pointer"] == "/data/target_preprocess/1/type"
        assert name in error["message"] and "targets" in error["message"] and "'standardize'" in error["hint"]
    (error,) = errors_of(spec_document(data={"source": IRIS, "target_preprocess": STANDARDIZE}))
    assert error["pointer"] == "/data/target_preprocess" and "regression" in error["message"]
    assert validate_document(diabetes(target_preprocess=[{"type": "minmax"}]))["valid"]


@pytest.mark.parametrize("name", TARGET_STEPS)
def test_each_target_step_inverts_its_transform(name: str) -> None:
    steps = [PREPROCESSORS.get(name)()]
    for y in (torch.rand(50) * 300 + 25, torch.rand(50, 3) * torch.tensor([1.0, 100.0, 1000.0]) - 5):
        fitted = fit_preprocessing(steps, y)
        scaled = apply_preprocessing(steps, fitted, y)
        assert not torch.allclose(scaled, y)
        torch.testing.assert_close(invert_preprocessing(steps, fitted, scaled), y, rtol=1e-5, atol=1e-3)


def test_target_statistics_come_from_the_training_split_only() -> None:
    """The validation targets are shifted by +1000: leaking them would move the fitted mean."""
    spec = parse_spec(diabetes(target_preprocess=STANDARDIZE))
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    train_ix, validation_ix, test_ix = split_indices(data, spec.data.split, seed=spec.seed, classify=False)
    data.y[torch.as_tensor(validation_ix)] += 1000.0
    splits = prepare_splits(spec, data)
    raw_train = data.y[torch.as_tensor(train_ix)]
    torch.testing.assert_close(splits.fitted_target_preprocessing["0.mean"], raw_train.mean())
    assert abs(float(splits.train.y.mean())) < 1e-4 and abs(float(splits.train.y.std(unbiased=False)) - 1) < 1e-4
    expected = (data.y[torch.as_tensor(validation_ix)] - raw_train.mean()) / raw_train.std(unbiased=False)
    torch.testing.assert_close(splits.validation.y, expected)
    assert splits.validation.y.mean() > 10  # still shifted: its own statistics were not used
    assert abs(float(splits.test.y.mean())) < 1.0 and len(splits.test) == len(test_ix)
    assert splits.fitted_preprocessing.keys() == {"0.mean", "0.std"}  # the features' own, apart


def test_without_it_the_run_diverges_and_the_failure_names_the_field() -> None:
    result = train(diabetes())
    assert result.status == "failed" and result.epochs <= 2
    assert "diverged" in result.failure and "/data/target_preprocess" in result.failure
    assert "mean 151" in result.failure and "loss_scale" not in result.summary()


def test_a_divergence_on_unit_scale_targets_only_blames_the_learning_rate() -> None:
    document = diabetes(target_preprocess=STANDARDIZE)
    document["optimizer"] = {"type": "sgd", "lr": 10.0, "momentum": 0.9}
    result = train(document)
    assert result.status == "failed" and "lower the learning rate" in result.failure
    assert "target_preprocess" not in result.failure


def test_far_from_unit_scale_is_decided_per_target() -> None:
    unit = torch.randn(200, generator=torch.Generator().manual_seed(0))
    unit = (unit - unit.mean()) / unit.std(unbiased=False)  # mean 0, std 1 exactly
    assert unscaled_targets(unit) is None
    assert unscaled_targets(unit * 3 + 5) is None
    offset = torch.stack([unit, unit + 50], dim=1)
    assert "mean 50" in unscaled_targets(offset)
    assert "std 20" in unscaled_targets(unit * 20)


def test_standardized_targets_train_and_predict_in_the_original_units(tmp_path: Path) -> None:
    result = train(diabetes(target_preprocess=STANDARDIZE))
    assert result.status == "succeeded", result.failure
    summary = result.summary()
    assert summary["loss_scale"] == "targets after standardize"
    assert summary["test_loss"] < 1.0  # on the standardized scale (the raw targets' variance is ~5900)
    result.save(tmp_path)
    stored = load_file(tmp_path / run_folder.TARGET_PREPROCESSING)
    assert stored["0.mean"].item() == pytest.approx(151.0, abs=2.0) and run_folder.TARGET_PREPROCESSING in (
        run_folder.ARCHIVE
    )
    trained = load_trained(tmp_path)
    data = result.plan.data
    predictions = torch.tensor(trained.predict(data.x)["predictions"])
    assert predictions.shape == (len(data),)
    assert abs(float(predictions.mean()) - float(data.y.mean())) < 15  # ~152, not ~0
    assert float(predictions.std()) > 20
    with torch.no_grad():
        model_scale = trained.model(
            apply_preprocessing(trained.spec.data.preprocess, trained.fitted_preprocessing, data.x)
        )
    assert abs(float(model_scale.mean())) < 1.0  # the network itself answers on the standardized scale
    rmse = float((predictions - data.y).pow(2).mean().sqrt())
    assert rmse < float(data.y.std())  # better than predicting the mean, in the targets' units


def test_several_targets_are_scaled_and_inverted_per_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.stack([100 + 30 * x[:, 0], -0.5 * x[:, 1]], axis=1)
    document = spec_document(
        task="regression",
        data={"source": {"type": "inline", "x": x.tolist(), "y": y.tolist()}, "target_preprocess": STANDARDIZE},
        loss={"type": "mse"},
    )
    result = train(document)
    assert result.status == "succeeded", result.failure
    assert result.splits.fitted_target_preprocessing["0.mean"].shape == (2,)
    result.save(tmp_path)
    trained = load_trained(tmp_path)
    inputs = torch.tensor(x[:5], dtype=torch.float32)
    state = trained.fitted_target_preprocessing
    with torch.no_grad():
        scaled = trained.model(apply_preprocessing(trained.spec.data.preprocess, trained.fitted_preprocessing, inputs))
        torch.testing.assert_close(trained.outputs(inputs), scaled * state["0.std"] + state["0.mean"])


def test_the_onnx_graph_includes_the_inverse(tmp_path: Path) -> None:
    result = train(diabetes(target_preprocess=[{"type": "minmax"}]))
    assert result.status == "succeeded", result.failure
    result.save(tmp_path)
    trained = load_trained(tmp_path)
    export_onnx(trained, tmp_path / run_folder.ONNX)
    session = onnxruntime.InferenceSession(str(tmp_path / run_folder.ONNX))
    raw = result.plan.data.x[:40]
    (exported,) = session.run(None, {"inputs": raw.numpy()})
    with torch.no_grad():
        assert np.allclose(exported, trained.outputs(raw).numpy(), atol=1e-3)
    assert 50 < exported.mean() < 250  # the targets' units, not [0, 1]


def test_kfold_fits_the_targets_per_fold(tmp_path: Path) -> None:
    spec = parse_spec(diabetes(epochs=2, target_preprocess=STANDARDIZE, split={"kfold": 3, "test": 0.2}))
    result = train_run(plan_experiment(spec), folder=tmp_path, device="cpu")
    assert isinstance(result, KFoldResult) and result.status == "succeeded", result.failure
    means = []
    for i, (train_rows, _) in enumerate(result.fold_indices, start=1):
        fitted = load_file(run_folder.fold_folder(tmp_path, i) / run_folder.TARGET_PREPROCESSING)
        torch.testing.assert_close(fitted["0.mean"], result.plan.data.y[torch.as_tensor(train_rows)].mean())
        means.append(fitted["0.mean"].item())
    assert len(set(means)) == 3
    summary = result.summary()
    assert summary["loss_scale"] == "targets after standardize"
    assert all(fold["loss_scale"] == "targets after standardize" for fold in summary["folds"])
