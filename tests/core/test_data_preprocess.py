"""Preprocessing as fitted objects: statistics from the training split only, PCA / ZCA whitening,
the model's input shape after preprocessing, and the stored state reproducing the same inputs."""

from __future__ import annotations

import torch

from core.artifacts import load_trained
from core.data.preprocess import PREPROCESSORS, apply_preprocessing, fit_preprocessing
from core.data.split import split_indices
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import prepare_splits
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS, IRIS, spec_document, train

WINE = {"type": "builtin", "name": "wine"}


def covariance(x: torch.Tensor) -> torch.Tensor:
    return torch.cov(x.reshape(x.shape[0], -1).double().T)


def test_statistics_come_from_the_training_split_only():
    """The validation rows are shifted by +100: leaking them into the statistics would move the
    training mean away from 0 and the validation mean towards it."""
    spec = parse_spec({"data": {"source": IRIS, "preprocess": [{"type": "standardize"}]}})
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    train_ix, validation_ix, _ = split_indices(data, spec.data.split, seed=spec.seed, classify=True)
    data.x[torch.as_tensor(validation_ix)] += 100.0
    splits = prepare_splits(spec, data)
    raw_train = data.x[torch.as_tensor(train_ix)]
    torch.testing.assert_close(splits.fitted_preprocessing["0.mean"], raw_train.mean(0))
    torch.testing.assert_close(splits.train.x.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(splits.train.x.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    expected = (data.x[torch.as_tensor(validation_ix)] - raw_train.mean(0)) / raw_train.std(0, unbiased=False)
    torch.testing.assert_close(splits.validation.x, expected)
    assert (splits.validation.x.mean(0) > 10).all()  # still shifted: its own statistics were not used
    assert splits.test.x.mean(0).abs().max() < 1.0  # the test rows were not shifted


def test_pca_statistics_come_from_the_training_split_only():
    spec = parse_spec({"data": {"source": WINE, "preprocess": [{"type": "pca", "components": 3, "whiten": True}]}})
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    _, validation_ix, _ = split_indices(data, spec.data.split, seed=spec.seed, classify=True)
    clean = prepare_splits(spec, data)
    data.x[torch.as_tensor(validation_ix)] *= 50.0
    shifted = prepare_splits(spec, data)
    for key, value in clean.fitted_preprocessing.items():
        torch.testing.assert_close(shifted.fitted_preprocessing[key], value)
    torch.testing.assert_close(shifted.train.x, clean.train.x)


def test_pca_whitening_gives_identity_covariance_on_the_training_split():
    spec = parse_spec({"data": {"source": DIGITS, "preprocess": [{"type": "pca", "components": 20, "whiten": True}]}})
    splits = prepare_splits(spec, spec.data.source.load(task=spec.task, seed=0))
    assert splits.train.x.shape[1:] == (20,)
    torch.testing.assert_close(covariance(splits.train.x), torch.eye(20, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(splits.train.x.mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    assert not torch.allclose(covariance(splits.test.x), torch.eye(20, dtype=torch.float64), atol=1e-2)


def test_pca_without_whitening_decorrelates_in_order_of_variance():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0)) @ torch.randn(
        6, 6, generator=torch.Generator().manual_seed(1)
    )
    step = PREPROCESSORS.get("pca")(components=4)
    fitted = fit_preprocessing([step], x)
    out = apply_preprocessing([step], fitted, x)
    cov = covariance(out)
    variances = torch.diagonal(cov)
    torch.testing.assert_close(cov - torch.diag(variances), torch.zeros(4, 4, dtype=torch.float64), atol=1e-3, rtol=0)
    assert (variances[:-1] >= variances[1:]).all()
    torch.testing.assert_close(variances.float(), fitted["0.explained_variance"], rtol=1e-3, atol=1e-4)
    top = torch.linalg.eigvalsh(covariance(x)).flip(0)[:4]
    torch.testing.assert_close(variances, top, rtol=1e-4, atol=1e-6)


def test_zca_whitening_gives_identity_covariance_and_keeps_the_shape():
    spec = parse_spec({"data": {"source": WINE, "preprocess": [{"type": "zca_whiten", "eps": 1e-8}]}})
    splits = prepare_splits(spec, spec.data.source.load(task=spec.task, seed=0))
    torch.testing.assert_close(covariance(splits.train.x), torch.eye(13, dtype=torch.float64), atol=1e-3, rtol=0)

    spec = parse_spec({"data": {"source": DIGITS, "preprocess": [{"type": "zca_whiten", "eps": 1e-6}]}})
    data = spec.data.source.load(task=spec.task, seed=0)
    splits = prepare_splits(spec, data)
    assert splits.train.x.shape[1:] == (1, 8, 8)  # images stay images
    raw = data.x[torch.as_tensor(split_indices(data, spec.data.split, seed=0, classify=True)[0])].flatten(1)
    varying = covariance(raw).diagonal() > 0  # a few border pixels never change in the training rows
    torch.testing.assert_close(covariance(splits.train.x), torch.diag(varying.double()), atol=5e-3, rtol=0)
    # ZCA is the whitening closest to the input: it stays correlated with the centred pixels
    centred = (splits.train.x - splits.train.x.mean(0)).flatten(1)
    raw = raw - raw.mean(0)
    both = varying.nonzero().squeeze(1)
    correlation = torch.nn.functional.cosine_similarity(centred[:, both], raw[:, both], dim=0)
    assert correlation.mean() > 0.3


def test_pca_changes_the_model_input_shape_in_the_plan_and_the_layer_table():
    document = spec_document(
        data={"source": DIGITS, "preprocess": [{"type": "standardize"}, {"type": "pca", "components": 12}]}
    )
    report = validate_document(document)
    assert report["valid"], report
    assert report["input_shape"] == [1, 8, 8] and report["model_input_shape"] == [12]
    first = report["layers"][0]
    assert first["type"] == "dense" and first["params"] == 12 * 32 + 32
    result = train(document)
    assert result.status == "succeeded" and result.splits.train.x.shape[1:] == (12,)


def test_too_many_pca_components_is_a_validation_error():
    report = validate_document(spec_document(data={"source": IRIS, "preprocess": [{"type": "pca", "components": 5}]}))
    assert report["errors"][0]["pointer"] == "/data/preprocess/0/components"
    assert "5 components" in report["errors"][0]["message"]
    report = validate_document(
        spec_document(
            data={"source": DIGITS, "preprocess": [{"type": "pca", "components": 10}]},
            model={"type": "cnn", "layers": [{"type": "conv", "filters": 4}]},
        )
    )
    assert report["errors"][0]["pointer"] == "/model/layers/0"  # a conv cannot take the flattened vector


def test_stored_preprocessing_reproduces_the_same_inputs_after_reload(tmp_path):
    document = spec_document(
        epochs=1,
        data={
            "source": DIGITS,
            "preprocess": [{"type": "standardize"}, {"type": "pca", "components": 16, "whiten": True}],
        },
    )
    spec = parse_spec(document)
    plan = plan_experiment(spec)
    result = train(document, plan=plan)
    result.save(tmp_path)
    trained = load_trained(tmp_path)
    assert trained.input_shape == (1, 8, 8)
    _, _, test_ix = split_indices(plan.data, spec.data.split, seed=spec.seed, classify=True)
    raw_test = plan.data.x[torch.as_tensor(test_ix)]
    again = apply_preprocessing(trained.spec.data.preprocess, trained.fitted_preprocessing, raw_test)
    torch.testing.assert_close(again, result.splits.test.x, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        expected = result.model.eval()(result.splits.test.x).softmax(-1)
    predicted = trained.predict(trained.inputs_tensor(raw_test.tolist()))
    torch.testing.assert_close(torch.tensor(predicted["probabilities"]), expected, atol=1e-5, rtol=1e-4)


def test_zca_state_round_trips_through_safetensors(tmp_path):
    document = spec_document(epochs=1, data={"source": WINE, "preprocess": [{"type": "zca_whiten"}]})
    result = train(document)
    result.save(tmp_path)
    trained = load_trained(tmp_path)
    assert set(trained.fitted_preprocessing) == {"0.mean", "0.whitening"}
    for key, value in result.splits.fitted_preprocessing.items():
        torch.testing.assert_close(trained.fitted_preprocessing[key], value)
