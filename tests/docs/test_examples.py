"""Every spec in examples/ is valid as shipped (file sources resolve next to the spec, as the CLI reads them)."""

import json
from pathlib import Path

import pytest

from core.data.files import data_access
from core.engine.plan import validate_document

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.json"))


def test_there_are_examples_for_the_lessons() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {
        "zero_init",
        "deep_sigmoid",
        "sgd",
        "adam",
        "warmup_cosine",
        "overfit_regularized",
        "cnn_digits",
        "lstm_sine",
        "logistic_inline",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_validates(path: Path) -> None:
    with data_access(local_base=path.parent):
        report = validate_document(json.loads(path.read_text()))
    assert report["valid"], report.get("errors")
