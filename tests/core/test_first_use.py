"""First use: seed 001's logistic regression as the notes write it (six points, no validation or
test split, no early_stopping key) trains and predicts; an explicit early stopping without a
validation split stays an error."""

from pathlib import Path

from core.artifacts import load_trained
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import train_run
from core.spec.schema import parse_spec

SEED_001 = {
    "task": "binary",
    "epochs": 2000,
    "data": {
        "source": {"type": "inline", "x": [[1, 2], [2, 3], [3, 4], [4, 4], [5, 3], [6, 2]], "y": [0, 0, 0, 1, 1, 1]},
        "split": {"validation": 0, "test": 0},
        "batch_size": 6,
    },
    "model": {"type": "linear"},
    "loss": {"type": "bce"},
    "optimizer": {"type": "sgd", "lr": 0.01},
}


def test_seed_001_as_written_trains_and_predicts_6_4_as_1(tmp_path: Path) -> None:
    spec = parse_spec(SEED_001)
    assert spec.regularization.early_stopping is None, "the default early stopping needs a validation split"
    result = train_run(plan_experiment(spec), folder=tmp_path, device="cpu")
    assert result.status == "succeeded" and result.epochs == 2000
    result.save(tmp_path)
    trained = load_trained(tmp_path)
    answer = trained.predict(trained.inputs_tensor([[6, 4]]))
    assert answer["predictions"] == ["1"] and answer["probabilities"][0][1] > 0.9


def test_explicit_early_stopping_without_a_validation_split_is_an_error() -> None:
    document = {**SEED_001, "regularization": {"early_stopping": {"monitor": "val_loss"}}}
    errors = validate_document(document)["errors"]
    assert errors[0]["pointer"] == "/regularization/early_stopping/monitor"
    assert "no validation split" in errors[0]["message"]


def test_the_default_early_stopping_still_applies_with_a_validation_split() -> None:
    document = {**SEED_001, "data": {**SEED_001["data"], "split": {"validation": 0.34, "test": 0}}}
    assert parse_spec(document).regularization.early_stopping is not None
