"""Bad specs: each one is refused with a JSON pointer into the submitted document, a message and,
where one helps, a hint; none of them trains."""

from __future__ import annotations

from typing import Any

import pytest

from core.engine.events import Callback
from core.engine.plan import validate_document
from core.engine.run import run_experiment
from core.errors import SpecInvalid
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS, IRIS, resolve_pointer

DIGITS_DATA = {"source": DIGITS}
IRIS_DATA = {"source": IRIS}
SHRINKING_CNN = {
    "type": "cnn",
    "layers": [
        {"type": "conv", "filters": 4, "kernel": 3},  # 8 → 6
        {"type": "conv", "filters": 4, "kernel": 3},  # 6 → 4
        {"type": "max_pool", "kernel": 2},  # 4 → 2
        {"type": "conv", "filters": 4, "kernel": 3},  # 2 → 0: impossible
        {"type": "flatten"},
    ],
}

# id: (document, stage, acceptable pointers, message contains, hint contains)
# stage "schema": parse_spec refuses it; "data": it parses but is refused once checked against its data.
BAD_SPECS: dict[str, tuple[dict[str, Any], str, tuple[str, ...], str, str | None]] = {
    "unknown top-level key": ({"epoch": 3, "data": DIGITS_DATA}, "schema", ("/epoch",), "unknown key", "'epochs'"),
    "unknown nested key": (
        {"data": DIGITS_DATA, "model": {"type": "mlp", "hiden": [32]}},
        "schema",
        ("/model/hiden",),
        "unknown key",
        "did you mean 'hidden'",
    ),
    "unknown key in a layer": (
        {"data": DIGITS_DATA, "model": {"type": "cnn", "layers": [{"type": "conv", "filters": 2, "kernal": 3}]}},
        "schema",
        ("/model/layers/0/kernal",),
        "unknown key",
        "did you mean 'kernel'",
    ),
    "wrong type": ({"epochs": "x", "data": DIGITS_DATA}, "schema", ("/epochs",), "integer", None),
    "negative lr": (
        {"data": DIGITS_DATA, "optimizer": {"type": "adam", "lr": -0.1}},
        "schema",
        ("/optimizer/lr",),
        "greater than 0",
        None,
    ),
    "lr above the maximum": (
        {"data": DIGITS_DATA, "optimizer": {"type": "sgd", "lr": 11}},
        "schema",
        ("/optimizer/lr",),
        "less than or equal to 10",
        None,
    ),
    "unknown activation": (
        {"data": DIGITS_DATA, "model": {"type": "mlp", "activation": {"type": "relux"}}},
        "schema",
        ("/model/activation/type",),
        "unknown type 'relux'",
        "did you mean 'relu'",
    ),
    "unknown activation in a layer": (
        {"data": DIGITS_DATA, "model": {"type": "cnn", "layers": [{"type": "activation", "fn": {"type": "sigmod"}}]}},
        "schema",
        ("/model/layers/0/fn/type",),
        "unknown type 'sigmod'",
        "did you mean 'sigmoid'",
    ),
    "unknown model type": (
        {"data": DIGITS_DATA, "model": {"type": "mpl"}},
        "schema",
        ("/model/type",),
        "unknown type",
        "did you mean 'mlp'",
    ),
    "bce on a 10-class task": (
        {"data": DIGITS_DATA, "loss": {"type": "bce"}},
        "schema",
        ("/loss/type",),
        "does not fit task 'classification'",
        "cross_entropy",
    ),
    "conv stack shrinks below one pixel": (
        {"data": DIGITS_DATA, "model": SHRINKING_CNN},
        "data",
        ("/model/layers/3",),
        "≤ 0",
        None,
    ),
    "nesterov without momentum": (
        {"data": DIGITS_DATA, "optimizer": {"type": "sgd", "lr": 0.1, "nesterov": True}},
        "schema",
        ("/optimizer/nesterov", "/optimizer"),
        "momentum",
        None,
    ),
    "adam betas out of range": (
        {"data": DIGITS_DATA, "optimizer": {"type": "adam", "betas": [1.5, 0.9]}},
        "schema",
        ("/optimizer/betas", "/optimizer"),
        "betas",
        None,
    ),
    "early stopping on val_loss without validation": (
        {
            "data": {"source": DIGITS, "split": {"validation": 0, "test": 0.2}},
            "regularization": {"early_stopping": {"monitor": "val_loss", "patience": 2}},
        },
        "schema",
        ("/regularization/early_stopping/monitor",),
        "no validation split",
        "validation",
    ),
    "early stopping mode against its monitor": (
        {"data": DIGITS_DATA, "regularization": {"early_stopping": {"monitor": "val_accuracy", "mode": "min"}}},
        "schema",
        ("/regularization/early_stopping/mode",),
        "mode must be 'max'",
        None,
    ),
    "accuracy on a regression task": (
        {
            "task": "regression",
            "data": {"source": {"type": "builtin", "name": "diabetes"}},
            "regularization": {"early_stopping": {"monitor": "val_accuracy"}},
        },
        "schema",
        ("/regularization/early_stopping/monitor",),
        "no accuracy",
        None,
    ),
    "reduce_on_plateau without validation": (
        {
            "data": {"source": DIGITS, "split": {"validation": 0}},
            "regularization": {"early_stopping": None},
            "schedule": {"type": "reduce_on_plateau", "monitor": "val_loss"},
        },
        "schema",
        ("/schedule/monitor",),
        "no validation split",
        "train_loss",
    ),
    "splits leave nothing to train on": (
        {"data": {"source": DIGITS, "split": {"validation": 0.5, "test": 0.5}}},
        "schema",
        ("/data/split/test",),
        "sum < 1",
        None,
    ),
    "inline x and y lengths differ": (
        {"data": {"source": {"type": "inline", "x": [[1, 2], [3, 4], [5, 6]], "y": [0, 1]}}},
        "schema",
        ("/data/source/y",),
        "x has 3 rows but y has 2",
        None,
    ),
    "image augmentation on tabular data": (
        {"data": {"source": IRIS, "augment": [{"type": "gaussian_noise"}, {"type": "hflip"}]}},
        "data",
        ("/data/augment/1/type",),
        "'hflip' does not apply to tabular data",
        "image",
    ),
    "binary task on 10 classes": (
        {"task": "binary", "data": DIGITS_DATA},
        "data",
        ("/data/source/name",),
        "exactly 2 classes; the data has 10",
        "classification",
    ),
    "sequential model ending in the wrong width": (
        {
            "data": DIGITS_DATA,
            "model": {"type": "sequential", "layers": [{"type": "flatten"}, {"type": "dense", "units": 4}]},
        },
        "data",
        ("/model/layers/1",),
        "needs 10 output(s)",
        "10 units",
    ),
    "rnn layer on images": (
        {"data": DIGITS_DATA, "model": {"type": "cnn", "layers": [{"type": "lstm", "hidden": 4}]}},
        "data",
        ("/model/layers/0",),
        "(steps, features) sequence",
        None,
    ),
    "rnn given a layer list": (
        {"data": DIGITS_DATA, "model": {"type": "rnn", "layers": [{"type": "lstm", "hidden": 4}]}},
        "schema",
        ("/model/layers",),
        "for model type 'rnn', 'layers' is the number of stacked recurrent layers (an integer)",
        '{"type": "sequential", "layers": [...]}',
    ),
    "cnn given a layer count": (
        {"data": DIGITS_DATA, "model": {"type": "cnn", "layers": 2}},
        "schema",
        ("/model/layers",),
        "for model type 'cnn', 'layers' is",
        '{"type": "rnn", "layers": 2}',
    ),
    "mlp given one width": (
        {"data": DIGITS_DATA, "model": {"type": "mlp", "hidden": 64}},
        "schema",
        ("/model/hidden",),
        "(a list)",
        "for one, write [64]",
    ),
}


class _MustNotStart(Callback):
    def __init__(self) -> None:
        self.started = False

    def on_fit_start(self, state) -> None:
        self.started = True


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_refused_with_pointer_message_and_hint(case):
    document, _stage, pointers, message, hint = BAD_SPECS[case]
    report = validate_document(document)
    assert report["valid"] is False
    assert "layers" not in report
    assert report["errors"], "at least one error"
    for error in report["errors"]:
        assert set(error) == {"pointer", "message", "hint"}
        assert error["message"]
    matching = [e for e in report["errors"] if e["pointer"] in pointers]
    assert matching, f"expected an error at {pointers}, got {report['errors']}"
    error = matching[0]
    assert message in error["message"], error
    if hint is not None:
        assert error["hint"] and hint in error["hint"], error
    resolve_pointer(document, error["pointer"])  # the pointer names a place in the submitted document


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_never_trains(case):
    document, stage, pointers, _message, _hint = BAD_SPECS[case]
    watcher = _MustNotStart()
    if stage == "schema":
        with pytest.raises(SpecInvalid) as info:
            parse_spec(document)
    else:
        spec = parse_spec(document)
        with pytest.raises(SpecInvalid) as info:
            run_experiment(spec, device="cpu", callbacks=[watcher])
    assert not watcher.started
    if stage == "data":  # refused by the run itself, with the same pointer validation gives
        assert any(e.pointer in pointers for e in info.value.errors), info.value.errors


def test_every_pointer_of_a_schema_error_resolves_in_the_document():
    """Errors inside objects chosen by ``type`` (optimizers, activations, layers) point into the document,
    not at pydantic's union tags."""
    for case, (document, stage, *_rest) in BAD_SPECS.items():
        if stage != "schema":
            continue
        with pytest.raises(SpecInvalid) as info:
            parse_spec(document)
        for error in info.value.errors:
            try:
                resolve_pointer(document, error.pointer)
            except (KeyError, IndexError):
                # only a missing field may point where it belongs rather than at something present
                assert error.message == "Field required", (case, error)
                assert isinstance(resolve_pointer(document, error.pointer.rpartition("/")[0]), dict)


def test_several_problems_are_reported_together():
    document = {
        "epochs": 0,
        "data": DIGITS_DATA,
        "optimizer": {"type": "sgd", "lr": -1, "momentun": 0.9},
    }
    with pytest.raises(SpecInvalid) as info:
        parse_spec(document)
    pointers = {e.pointer for e in info.value.errors}
    assert {"/epochs", "/optimizer/lr", "/optimizer/momentun"} <= pointers
    hints = {e.pointer: e.hint for e in info.value.errors}
    assert hints["/optimizer/momentun"] == "did you mean 'momentum'?"


def test_missing_data_and_non_object_documents():
    with pytest.raises(SpecInvalid) as info:
        parse_spec({})
    assert [(e.pointer, e.message) for e in info.value.errors] == [("/data", "Field required")]
    with pytest.raises(SpecInvalid) as info:
        parse_spec([1, 2])
    assert info.value.errors[0].pointer == ""
    assert validate_document("nope")["valid"] is False


def test_unknown_key_without_close_match_lists_the_known_keys():
    report = validate_document({"data": DIGITS_DATA, "zzz": 1})
    (error,) = report["errors"]
    assert error["pointer"] == "/zzz"
    assert "epochs" in error["hint"] and "optimizer" in error["hint"]


def test_a_valid_spec_reports_defaults_and_the_layer_table():
    report = validate_document({"data": DIGITS_DATA, "model": {"type": "mlp", "hidden": [16]}})
    assert report["valid"] is True
    assert report["input_shape"] == [1, 8, 8]
    assert report["outputs"] == 10
    assert report["spec"]["optimizer"] == {
        "type": "adam",
        "lr": 0.001,
        "weight_decay": 0.0,
        "betas": [0.9, 0.999],
        "eps": 1e-08,
        "amsgrad": False,
    }
    assert report["spec"]["loss"]["type"] == "cross_entropy"
    assert [row["type"] for row in report["layers"]] == ["flatten", "dense", "activation", "dropout", "dense"]
    assert report["params"] == (64 * 16 + 16) + (16 * 10 + 10)
    assert report["memory_estimate_bytes"] > 4 * report["params"]


def test_a_count_or_a_list_error_names_both_meanings():
    """A field that is a count in one type and a list in another says which, with the other types."""
    layer_list = {"type": "rnn", "layers": [{"type": "lstm", "hidden": 4}, {"type": "dense", "units": 3}]}
    with pytest.raises(SpecInvalid) as info:
        parse_spec({"data": DIGITS_DATA, "model": layer_list})
    (error,) = info.value.errors
    assert error.message == "for model type 'rnn', 'layers' is the number of stacked recurrent layers (an integer)"
    assert error.hint == (
        "model type 'cnn', 'cnn_rnn' or 'sequential' take 'layers' as a list: "
        'e.g. {"type": "sequential", "layers": [...]}'
    )
    for model in ("cnn", "cnn_rnn"):
        with pytest.raises(SpecInvalid) as info:
            parse_spec({"data": DIGITS_DATA, "model": {"type": model, "layers": 3}})
        (error,) = info.value.errors
        assert error.message.startswith(f"for model type {model!r}, 'layers' is the conv / pool")
        assert error.message.endswith("(a list)")
        assert error.hint == 'model type \'rnn\' takes \'layers\' as an integer: e.g. {"type": "rnn", "layers": 3}'
    with pytest.raises(SpecInvalid) as info:  # the same inside a layer list: lstm (a count) against residual
        parse_spec({"data": DIGITS_DATA, "model": {"type": "sequential", "layers": [{"type": "lstm", "layers": []}]}})
    (error,) = info.value.errors
    assert (error.pointer, error.message) == ("/model/layers/0/layers", "for type 'lstm', 'layers' is an integer")
    assert "'residual' takes 'layers' as a list" in error.hint


def test_a_field_with_one_meaning_keeps_the_plain_error():
    """Only a count for a list (or a list for a count) gets the two-meanings error: not a string, and
    not a field no other type takes the other way."""
    with pytest.raises(SpecInvalid) as info:
        parse_spec({"data": DIGITS_DATA, "model": {"type": "rnn", "layers": "two"}})
    assert info.value.errors[0].hint is None and "integer" in info.value.errors[0].message
    cnn_rnn = {
        "type": "cnn_rnn",
        "layers": [{"type": "conv", "filters": 2, "kernel": 3}],
        "rnn": {"type": "gru", "layers": [1]},
    }
    with pytest.raises(SpecInvalid) as info:  # every recurrent layer type takes a count
        parse_spec({"data": DIGITS_DATA, "model": cnn_rnn})
    assert [(e.pointer, e.hint) for e in info.value.errors] == [("/model/rnn/layers", None)]
