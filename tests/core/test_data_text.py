"""Text and the other built-in sources: toy_text, the tokenizer built on the training split and
stored with the model, the embedding layer, and an LSTM that trains on text and predicts from raw
strings after reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.artifacts import load_trained
from core.data.dataset import Dataset
from core.data.split import split_indices
from core.data.text import PAD_ID, UNK_ID, Tokenizer, encode_dataset, toy_text
from core.engine.plan import plan_experiment, validate_document
from core.errors import SpecInvalid
from core.run_folder import TOKENIZER
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS, QUIET, train

TOY_TEXT = {"type": "builtin", "name": "toy_text", "n_samples": 600}


def text_document(**overrides: object) -> dict:
    document = {
        "task": "binary",
        "epochs": 8,
        "data": {"source": TOY_TEXT, "batch_size": 32},
        "model": {"type": "rnn", "cell": "lstm", "hidden": 32, "embedding": 16},
        "optimizer": {"type": "adam", "lr": 0.01},
        "schedule": {"type": "constant"},
        "regularization": {"early_stopping": None},
        "diagnostics": QUIET,
    }
    document.update(overrides)
    return document


def test_toy_text_is_reproducible_and_has_two_classes():
    a, labels_a = toy_text(200, seed=0, noise=0.0)
    b, labels_b = toy_text(200, seed=0, noise=0.0)
    c, _ = toy_text(200, seed=1, noise=0.0)
    assert a == b and np.array_equal(labels_a, labels_b) and a != c
    assert set(labels_a.tolist()) == {0, 1} and 60 < labels_a.sum() < 140
    assert all(text.endswith((".", "!")) and len(text.split()) >= 4 for text in a)
    _, flipped = toy_text(200, seed=0, noise=0.3)
    assert 0.15 < (flipped != labels_a).mean() < 0.45


def test_the_vocabulary_is_built_on_the_training_rows_only():
    texts = ["the cat sat .", "the dog ran .", "a zebra flew !"]
    data = Dataset(torch.zeros((3, 0), dtype=torch.int64), torch.tensor([0, 1, 0]), "text", ["0", "1"], texts)
    encoded = encode_dataset(data, np.array([0, 1]), max_length=8)
    tokenizer = encoded.tokenizer
    assert "zebra" not in tokenizer.vocab and tokenizer.vocab[:3] == ["<pad>", "<unk>", "."]
    assert encoded.x.shape == (3, 4) and encoded.x.dtype == torch.int64
    assert encoded.x[2].tolist() == [PAD_ID, UNK_ID, UNK_ID, UNK_ID, UNK_ID][1:]  # 'a zebra flew !': all unknown
    assert tokenizer.decode(encoded.x[:1]) == ["the cat sat ."]
    assert Tokenizer.from_json(tokenizer.to_json()).encode(texts).tolist() == encoded.x.tolist()


def test_tokens_are_left_padded_and_cut_to_the_length():
    tokenizer = Tokenizer.build(["One two three four five six", "one"], max_length=4)
    ids = tokenizer.encode(["one", "one two three four five six", "", "Seven!"])
    assert ids.shape == (4, 4)
    assert ids[0].tolist()[:3] == [PAD_ID] * 3 and ids[0, 3] == tokenizer.index["one"]
    assert ids[1].tolist() == [tokenizer.index[w] for w in ("one", "two", "three", "four")]
    assert ids[2].tolist() == [PAD_ID] * 4 and ids[3].tolist() == [PAD_ID, PAD_ID, UNK_ID, UNK_ID]


def test_plan_builds_the_vocabulary_on_the_training_split():
    spec = parse_spec(text_document())
    plan = plan_experiment(spec)
    train_rows, _, _ = split_indices(plan.data, spec.data.split, seed=spec.seed, classify=True)
    train_words = {w for i in train_rows for w in Tokenizer.tokens(plan.data.texts[i])}
    assert set(plan.data.tokenizer.vocab[2:]) == train_words
    assert plan.vocab_size == len(plan.data.tokenizer) and plan.data.kind == "text"
    assert plan.spec.data.preprocess == [], "text takes no preprocessing by default"
    report = plan.report()
    assert report["data"]["kind"] == "text" and report["data"]["vocabulary"] == plan.vocab_size
    first = report["layers"][0]
    assert first["type"] == "embedding" and first["pointer"] == "/model/embedding"
    assert first["params"] == plan.vocab_size * 16 and first["output_shape"] == [plan.input_shape[0], 16]


def test_text_lstm_trains_above_chance_and_predicts_raw_text_after_reload(tmp_path):
    augment = [{"type": "synonym_replace", "p": 0.3}, {"type": "sentence_shuffle", "p": 0.3}]
    document = text_document(
        epochs=6,
        data={"source": {**TOY_TEXT, "noise": 0.0}, "batch_size": 32, "augment": augment},
        model={"type": "rnn", "cell": "lstm", "hidden": 16, "embedding": 16},
        optimizer={"type": "adam", "lr": 0.02},
    )
    result = train(document)
    assert result.status == "succeeded"
    assert result.final["test_accuracy"] > 0.75, result.final  # chance is 0.5
    result.save(tmp_path)
    assert json.loads((tmp_path / TOKENIZER).read_text())["vocab"][:2] == ["<pad>", "<unk>"]

    trained = load_trained(tmp_path)
    texts = ["the movie was really wonderful .", "the plot was terrible . i hated it .", "the film was not good ."]
    prediction = trained.predict(trained.inputs_tensor(texts))
    assert prediction["predictions"][:2] == ["1", "0"]
    ids = result.plan.data.tokenizer.encode(texts)
    with torch.no_grad():
        positive = torch.sigmoid(result.model.eval()(ids).squeeze(-1))
    torch.testing.assert_close(torch.tensor(prediction["probabilities"])[:, 1], positive, atol=1e-5, rtol=1e-4)
    with pytest.raises(SpecInvalid) as info:
        trained.inputs_tensor(["fine", [1, 2]])
    assert info.value.errors[0].pointer == "/inputs/1"


def test_a_sequential_text_model_lists_its_embedding():
    model = {
        "type": "sequential",
        "layers": [
            {"type": "embedding", "dim": 8},
            {"type": "gru", "hidden": 8},
            {"type": "dense", "units": 1},
        ],
    }
    result = train(text_document(epochs=1, model=model))
    assert result.status == "succeeded"
    report = validate_document(text_document(model={**model, "layers": model["layers"][1:]}))
    assert report["errors"][0]["pointer"] == "/model/layers/0" and "embedding" in report["errors"][0]["message"]


@pytest.mark.parametrize(
    "model",
    [
        {"type": "mlp", "hidden": [8]},
        {"type": "cnn", "layers": [{"type": "conv", "filters": 4}, {"type": "max_pool"}]},
        {"type": "linear"},
    ],
)
def test_other_models_get_an_embedding_for_text(model):
    report = validate_document(text_document(model=model))
    assert report["valid"], report.get("errors")
    assert report["layers"][0]["type"] == "embedding" and report["layers"][0]["output_shape"][1] == 32


def test_embedding_on_numeric_data_and_preprocessing_of_text_are_refused():
    report = validate_document(
        {"data": {"source": DIGITS}, "model": {"type": "sequential", "layers": [{"type": "embedding"}]}}
    )
    assert report["errors"][0]["pointer"] == "/model/layers/0" and "text data" in report["errors"][0]["message"]
    report = validate_document(text_document(data={"source": TOY_TEXT, "preprocess": [{"type": "standardize"}]}))
    assert report["errors"][0]["pointer"] == "/data/preprocess/0/type"


# --- the other new built-in sets ----------------------------------------------------------------------


def test_digits_come_as_images_and_as_flat_vectors():
    images = parse_spec({"data": {"source": DIGITS}}).data.source.load(task="classification", seed=0)
    flat = parse_spec({"data": {"source": {"type": "builtin", "name": "digits_flat"}}}).data.source.load(
        task="classification", seed=0
    )
    assert images.x.shape == (1797, 1, 8, 8) and images.kind == "image"
    assert flat.x.shape == (1797, 64) and flat.kind == "tabular"
    assert torch.equal(images.x.flatten(1), flat.x)


def test_sine_series_classifies_frequency_bands():
    source = {"type": "builtin", "name": "sine_series", "n_samples": 400, "length": 24, "classes": 3, "noise": 0.0}
    data = parse_spec({"data": {"source": source}}).data.source.load(task="classification", seed=0)
    assert data.classes == ["0", "1", "2"] and data.kind == "sequence" and data.x.shape == (400, 24, 1)
    # a higher band has more zero crossings per window
    crossings = (data.x[:, 1:, 0].sign() != data.x[:, :-1, 0].sign()).sum(1).float()
    means = [crossings[data.y == band].mean().item() for band in range(3)]
    assert means[0] < means[1] < means[2]
    binary_source = {**source, "classes": None}  # a binary task has 2 bands; 'classes' is refused there
    binary = parse_spec({"task": "binary", "data": {"source": binary_source}}).data.source.load(task="binary", seed=0)
    assert binary.classes == ["0", "1"]
    document = {
        "epochs": 2,
        "data": {"source": source, "augment": [{"type": "smooth", "window": 3}, {"type": "time_shift"}]},
        "model": {"type": "rnn", "hidden": 8},
        "diagnostics": QUIET,
    }
    assert train(document).status == "succeeded"


def test_planning_returns_the_resolved_spec_and_leaves_its_input_as_it_was():
    spec = parse_spec({"data": {"source": {"type": "builtin", "name": "toy_text"}}, "model": {"type": "rnn"}})
    before = spec.model_dump()
    plan = plan_experiment(spec)
    assert plan.spec.data.preprocess == [] and spec.model_dump() == before
