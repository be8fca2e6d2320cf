"""A spec's ``sweep`` field: every problem is refused before anything runs, with one error per
problem pointing into ``/sweep/parameters/<key>``; trials are the base spec with their values set at
the parameters' paths; the dry run counts the trials and the training they add up to. None trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.engine.plan import plan_experiment, validate_document
from core.errors import SpecError, SpecInvalid
from core.spec.schema import parse_spec
from core.spec.trials import grid, sweep_work, trial_document
from tests.core.helpers import DIGITS, IRIS, resolve_pointer

BASE: dict[str, Any] = {"epochs": 2, "data": {"source": DIGITS}}


def swept(parameters: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """The base spec with a sweep over ``parameters``."""
    return {**BASE, "sweep": {"method": "random", "parameters": parameters, **settings}}


def refusal(document: dict[str, Any]) -> list[SpecError]:
    """The errors of a refused spec; each names a place in the document, or a key of an object in
    it (where a defaulted or missing field belongs)."""
    with pytest.raises(SpecInvalid) as info:
        parse_spec(document)
    for error in info.value.errors:
        try:
            resolve_pointer(document, error.pointer)
        except KeyError:
            assert isinstance(resolve_pointer(document, error.pointer.rpartition("/")[0]), dict), error
    return info.value.errors


def test_a_path_that_does_not_exist_points_at_the_key_with_a_did_you_mean() -> None:
    (error,) = refusal(swept({"optimizer.lrr": [0.1, 0.01]}))
    assert error.pointer == "/sweep/parameters/optimizer.lrr"
    assert "'lrr' is not a field of optimizer" in error.message
    assert error.hint == "did you mean 'optimizer.lr'?"


def test_a_path_into_a_single_value_or_past_a_list_is_refused() -> None:
    (error,) = refusal(swept({"epochs.value": [1]}))
    assert error.pointer == "/sweep/parameters/epochs.value" and "a single value" in error.message
    (error,) = refusal(swept({"data.preprocess.3.type": ["minmax"]}))
    assert "a list of 1" in error.message and "'3' is not an index" in error.message
    (error,) = refusal(swept({"sweep.trials": [1, 2]}))
    assert "its own settings" in error.message


def test_a_value_the_schema_refuses_points_at_its_index_with_the_inner_message() -> None:
    (error,) = refusal(swept({"optimizer.lr": [0.1, -1]}))
    assert error.pointer == "/sweep/parameters/optimizer.lr/1"
    assert error.message == "-1: Input should be greater than 0"


def test_a_value_refused_elsewhere_in_the_spec_names_where() -> None:
    (error,) = refusal(swept({"data.split.test": [0.2, 0.9]}))
    assert error.pointer == "/sweep/parameters/data.split.test/1"
    assert error.message.startswith("0.9: validation + test must leave data to train on")
    (error,) = refusal(swept({"model.type": ["mlp", "mlpp"]}))
    assert error.pointer == "/sweep/parameters/model.type/1" and error.message == "'mlpp': unknown type 'mlpp'"
    assert error.hint.startswith("did you mean 'mlp'?")


def test_every_trial_must_have_what_the_sweep_compares() -> None:
    """A trial is checked under the sweep's rules too: its metric needs a validation split, k-fold
    trials are refused, a regression trial has no accuracy."""
    (error,) = refusal(swept({"data.split.validation": [0.2, 0.0]}))
    assert error.pointer == "/sweep/parameters/data.split.validation/1"
    assert "no validation split (at /sweep/metric)" in error.message
    (error,) = refusal(swept({"data.split": [{"kfold": 3, "validation": 0}]}, metric="train_loss"))
    assert error.pointer == "/sweep/parameters/data.split/0" and "k-fold runs (at /sweep)" in error.message
    (error,) = refusal(swept({"task": ["classification", "regression"]}, metric="val_accuracy"))
    assert error.pointer == "/sweep/parameters/task/1" and "no accuracy" in error.message


def test_a_json_pointer_key_works_and_its_error_pointer_escapes_it() -> None:
    document = swept({"/optimizer/lr": [0.1, 0.01]})
    spec = parse_spec(document)
    resolved = spec.model_dump(mode="json", exclude={"sweep"})
    trial = parse_spec(trial_document(document, resolved, {"/optimizer/lr": 0.01}))
    assert trial.optimizer.lr == 0.01 and trial.sweep is None
    (error,) = refusal(swept({"/optimizer/lr": [-1]}))
    assert error.pointer == "/sweep/parameters/~1optimizer~1lr/0"


@pytest.mark.parametrize(
    ("values", "pointer", "message", "hint"),
    [
        ({"type": "uniform", "low": 0.5, "high": 0.1}, "/high", "high must be greater than low", None),
        ({"type": "int", "low": 3, "high": 3}, "/high", "high must be greater than low", None),
        ({"type": "log_uniform", "low": 0, "high": 0.1}, "/low", "Input should be greater than 0", None),
        ({"type": "log_uniformm", "low": 0.01, "high": 0.1}, "/type", "unknown type 'log_uniformm'", "'log_uniform'"),
        ({"type": "normal", "low": 0.01, "high": 0.1}, "/type", "unknown type 'normal'", "uniform, log_uniform, int"),
        ({"low": 0.01, "high": 0.1}, "/type", "missing 'type'", "uniform, log_uniform, int"),
        ({"type": "uniform", "low": 0.01, "high": 0.1, "stepp": 1}, "/stepp", "unknown key 'stepp'", "type, low, high"),
        (0.1, "", '({"type": "uniform"|"log_uniform"|"int", "low", "high"})', "for one value, write [0.1]"),
        ("adam", "", "a list of values or a distribution", 'for one value, write ["adam"]'),
    ],
)
def test_a_distribution_error_is_the_only_error_and_points_inside_it(
    values: Any, pointer: str, message: str, hint: str | None
) -> None:
    """An object is read only as a distribution (no "should be a valid list" besides), anything
    else but a list is refused once, with how to write one value."""
    (error,) = refusal(swept({"optimizer.lr": values}))
    assert error.pointer == "/sweep/parameters/optimizer.lr" + pointer
    assert message in error.message
    assert hint is None or (error.hint and hint in error.hint), error


def test_a_float_distribution_over_an_integer_field_is_refused() -> None:
    (error,) = refusal(swept({"epochs": {"type": "uniform", "low": 1, "high": 5}}))
    assert error.pointer == "/sweep/parameters/epochs/type"
    assert "fractional" in error.message and "valid integer" in error.message
    assert error.hint == 'for whole numbers, use {"type": "int", "low": 1, "high": 5}'
    assert parse_spec(swept({"epochs": {"type": "int", "low": 1, "high": 5}})).sweep is not None


def test_a_grid_takes_lists_only_and_at_most_a_thousand_combinations() -> None:
    (error,) = refusal(swept({"optimizer.lr": {"type": "uniform", "low": 0.01, "high": 0.1}}, method="grid"))
    assert error.pointer == "/sweep/parameters/optimizer.lr"
    assert "a grid sweep takes lists of values" in error.message and "'random' or 'tpe'" in error.hint
    big = {"model.dropout": [i / 100 for i in range(50)], "optimizer.lr": [0.1 / (i + 1) for i in range(21)]}
    (error,) = refusal(swept(big, method="grid"))
    assert error.pointer == "/sweep/parameters" and "1050 combinations" in error.message


def test_a_grid_combination_that_does_not_validate_is_refused() -> None:
    document = swept(
        {"data.split.validation": [0.5, 0.7], "data.split.test": [0.2, 0.4]}, method="grid", metric="train_loss"
    )
    (error,) = refusal(document)
    assert error.pointer == "/sweep/parameters"
    assert "'data.split.validation': 0.7, 'data.split.test': 0.4" in error.message


def test_two_keys_for_one_value_are_refused() -> None:
    (error,) = refusal(swept({"optimizer.lr": [0.1], "/optimizer/lr": [0.2]}))
    assert error.pointer == "/sweep/parameters/~1optimizer~1lr"
    assert error.message == "'/optimizer/lr' names the same value as 'optimizer.lr'"
    (error,) = refusal(swept({"model": [{"type": "mlp"}], "model.dropout": [0.1]}))
    assert error.pointer == "/sweep/parameters/model.dropout" and "one lies inside the other" in error.message


def test_mode_must_match_the_metric() -> None:
    (error,) = refusal(swept({"optimizer.lr": [0.1]}, metric="val_accuracy", mode="min"))
    assert error.pointer == "/sweep/mode" and "mode must be 'max'" in error.message
    assert parse_spec(swept({"optimizer.lr": [0.1]}, metric="val_accuracy")).sweep.mode == "max"


def test_a_sweep_of_k_fold_runs_is_refused() -> None:
    document = {**swept({"optimizer.lr": [0.1]}), "data": {"source": DIGITS, "split": {"kfold": 3, "validation": 0}}}
    (error,) = refusal(document)
    assert error.pointer == "/sweep" and "k-fold" in error.message


def test_a_validation_metric_needs_a_validation_split() -> None:
    document = {**swept({"optimizer.lr": [0.1]}), "data": {"source": DIGITS, "split": {"validation": 0}}}
    (error,) = refusal(document)
    assert error.pointer == "/sweep/metric" and "no validation split" in error.message
    parse_spec({**document, "sweep": {**document["sweep"], "metric": "train_loss"}})


def test_apply_writes_out_an_object_the_document_leaves_to_its_defaults() -> None:
    document = swept({"model.dropout": [0.3]})
    resolved = parse_spec(document).model_dump(mode="json", exclude={"sweep"})
    trial = trial_document(document, resolved, {"model.dropout": 0.3})
    assert trial["model"] == {"type": "mlp", "dropout": 0.3}
    assert "model" not in document and "sweep" not in trial
    model = parse_spec(trial).model.model_dump(mode="json")
    assert model == {**resolved["model"], "dropout": 0.3}, "the default mlp with that dropout"


def test_another_type_of_a_defaulted_object_takes_that_type_s_defaults() -> None:
    """The default optimizer is adam; sweeping its type to sgd gives sgd's fields, not adam's betas."""
    document = swept({"optimizer.type": ["adam", "sgd"], "schedule.type": ["constant", "reduce_on_plateau"]})
    spec = parse_spec(document)
    resolved = spec.model_dump(mode="json", exclude={"sweep"})
    trial = parse_spec(trial_document(document, resolved, {"optimizer.type": "sgd", "schedule.type": "constant"}))
    assert trial.optimizer.type == "sgd" and trial.schedule.type == "constant"


def test_a_list_index_path_sets_one_item() -> None:
    document = swept({"data.preprocess.0.type": ["minmax", "zero_center"]})
    spec = parse_spec(document)
    resolved = spec.model_dump(mode="json", exclude={"sweep"})
    trial = parse_spec(trial_document(document, resolved, {"data.preprocess.0.type": "minmax"}))
    assert [step.type for step in trial.data.preprocess] == ["minmax"]
    assert "preprocess" not in document["data"]
    (error,) = refusal(swept({"data.preprocess.0.type": ["minmax", "whiten"]}))
    assert error.pointer == "/sweep/parameters/data.preprocess.0.type/1" and "unknown type 'whiten'" in error.message


def test_grid_order_and_trial_count() -> None:
    parameters = {"optimizer.lr": [0.1, 0.01], "model.dropout": [0.0, 0.1, 0.2]}
    spec = parse_spec(swept(parameters, method="grid", trials=3))
    points = grid(spec.sweep)
    assert points[:4] == [
        {"optimizer.lr": 0.1, "model.dropout": 0.0},
        {"optimizer.lr": 0.1, "model.dropout": 0.1},
        {"optimizer.lr": 0.1, "model.dropout": 0.2},
        {"optimizer.lr": 0.01, "model.dropout": 0.0},
    ]
    assert len(points) == spec.sweep.trial_count == 6, "a grid ignores 'trials'"
    assert parse_spec(swept(parameters, method="tpe", trials=3)).sweep.trial_count == 3


def test_sweep_work_sums_epochs_over_the_trials() -> None:
    grid_spec = parse_spec(swept({"epochs": [1, 2, 5], "optimizer.lr": [0.1, 0.01]}, method="grid"))
    assert sweep_work(grid_spec, 100) == (1 + 2 + 5) * 2 * 100
    fixed = parse_spec(swept({"optimizer.lr": [0.1, 0.01]}, method="grid"))
    assert sweep_work(fixed, 100) == 2 * 2 * 100
    ranged = parse_spec(swept({"/epochs": {"type": "int", "low": 1, "high": 10, "step": 4}}, trials=7))
    assert sweep_work(ranged, 100) == 7 * 9 * 100, "the largest epochs a trial can draw: 1, 5 or 9"
    chosen = parse_spec(swept({"epochs": [3, 8, 4]}, method="tpe", trials=5))
    assert sweep_work(chosen, 10) == 5 * 8 * 10


def test_the_dry_run_reports_the_sweep() -> None:
    document = swept({"epochs": [1, 3], "optimizer.lr": [0.1, 0.01, 0.001]}, method="grid", metric="val_accuracy")
    report = validate_document(document)
    assert report["valid"] is True, report
    assert report["samples"] == 1797
    assert report["sweep"] == {
        "method": "grid",
        "metric": "val_accuracy",
        "mode": "max",
        "trials": 6,
        "epochs_x_samples": (1 + 3) * 3 * 1797,
    }
    assert plan_experiment(parse_spec(BASE)).report()["sweep"] is None


def test_validate_json_reports_a_sweep_spec(tmp_path: Path) -> None:
    document = {"epochs": 4, "data": {"source": IRIS}, "sweep": {"parameters": {"model.dropout": [0.0, 0.2]}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["sweep"] == {
        "method": "random",
        "metric": "val_loss",
        "mode": "min",
        "trials": 10,
        "epochs_x_samples": 10 * 4 * 150,
    }
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "10 trials, 6,000 epochs × samples in all" in " ".join(result.stdout.split())


def test_validate_names_a_sweep_error(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(swept({"optimizer.lr": 0.1})))
    result = CliRunner().invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 2
    (error,) = json.loads(result.stdout)["errors"]
    assert error["pointer"] == "/sweep/parameters/optimizer.lr" and error["hint"] == "for one value, write [0.1]"
