"""Built-in sets take only the parameters they use: on a bundled set ``n_samples`` draws a seeded
(stratified) subset; any other parameter, on any set that does not take it, is refused at its pointer."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.data.sources import BUILTIN_SETS, BUNDLED, set_parameters
from core.engine.plan import plan_experiment
from core.errors import SpecInvalid
from core.spec.schema import parse_spec
from tests.core.helpers import spec_document

PARAMETERS = ("n_samples", "noise", "length", "classes")
GENERATORS = [name for name in BUILTIN_SETS.names() if name not in BUNDLED]
TASKS = {"diabetes": "regression", "breast_cancer": "binary", "moons": "binary", "toy_text": "binary"}
VALUES = {"n_samples": 200, "noise": 0.2, "length": 8, "classes": 4}


def source_error(source: dict, task: str = "classification"):
    """The single error of a full spec document with this source, through parse_spec."""
    with pytest.raises(SpecInvalid) as info:
        parse_spec(spec_document(task=task, data={"source": {"type": "builtin", **source}}))
    assert len(info.value.errors) == 1
    return info.value.errors[0]


def test_noise_on_digits_is_refused_at_its_pointer():
    error = source_error({"name": "digits", "noise": 0.3})
    assert error.pointer == "/data/source/noise"
    assert "'digits'" in error.message and "n_samples" in error.message
    assert "moons" in error.hint


def test_n_samples_draws_a_stratified_subset_of_digits():
    document = spec_document(data={"source": {"type": "builtin", "name": "digits", "n_samples": 300}})
    spec = parse_spec(document)
    full = BUILTIN_SETS.get("digits")()[1]
    data = spec.data.source.load(task="classification", seed=spec.seed)
    assert len(data) == 300 and tuple(data.x.shape) == (300, 1, 8, 8)
    expected = np.bincount(full) * 300 / len(full)
    counts = np.bincount(data.y.numpy(), minlength=10)
    assert np.all(np.abs(counts - expected) <= 1), (counts, expected)
    other = parse_spec({**document, "seed": 1}).data.source.load(task="classification", seed=1)
    assert not np.array_equal(data.x.numpy(), other.x.numpy()), "the subset follows the spec's seed"
    again = spec.data.source.load(task="classification", seed=spec.seed)
    assert np.array_equal(data.x.numpy(), again.x.numpy())
    assert len(plan_experiment(spec).data) == 300, "the plan trains on the subset"


def test_the_subset_rows_are_rows_of_the_set():
    data = parse_spec({"data": {"source": {"type": "builtin", "name": "iris", "n_samples": 30}}}).data.source.load(
        task="classification", seed=0
    )
    x, _, _ = BUILTIN_SETS.get("iris")()
    drawn = Counter(map(tuple, data.x.numpy().tolist()))
    available = Counter(map(tuple, x.astype(np.float32).tolist()))
    assert sum(drawn.values()) == 30
    assert all(available[row] >= times for row, times in drawn.items()), "rows of the set, none drawn twice"
    assert np.bincount(data.y.numpy()).tolist() == [10, 10, 10]


def test_a_regression_set_draws_a_seeded_random_subset():
    source = parse_spec(
        {"task": "regression", "data": {"source": {"type": "builtin", "name": "diabetes", "n_samples": 100}}}
    )
    a = source.data.source.load(task="regression", seed=0)
    b = source.data.source.load(task="regression", seed=0)
    c = source.data.source.load(task="regression", seed=3)
    assert len(a) == 100
    assert np.array_equal(a.y.numpy(), b.y.numpy()) and not np.array_equal(a.y.numpy(), c.y.numpy())


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_n_samples_larger_than_a_bundled_set_is_an_error(name):
    spec = parse_spec({"data": {"source": {"type": "builtin", "name": name, "n_samples": 100_000}}})
    with pytest.raises(SpecInvalid) as info:
        spec.data.source.load(task=TASKS.get(name, "classification"), seed=0)
    error = info.value.errors[0]
    assert error.pointer == "/data/source/n_samples" and f"{name!r} has" in error.message


@pytest.mark.parametrize("name", sorted(BUNDLED))
@pytest.mark.parametrize("key", ["noise", "length", "classes"])
def test_every_bundled_set_refuses_a_generator_parameter(name, key):
    error = source_error({"name": name, key: VALUES[key]}, TASKS.get(name, "classification"))
    assert error.pointer == f"/data/source/{key}"
    assert f"'{name}'" in error.message and "n_samples" in error.message


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_refuses_the_parameters_it_does_not_use(name):
    takes = set_parameters(name)
    assert "n_samples" in takes and "noise" in takes
    for key in PARAMETERS:
        if key not in takes:
            error = source_error({"name": name, key: VALUES[key]}, TASKS.get(name, "classification"))
            assert error.pointer == f"/data/source/{key}" and ", ".join(takes) in error.message


@pytest.mark.parametrize("name", GENERATORS)
def test_generators_apply_their_parameters(name):
    task = TASKS.get(name, "regression" if name == "sine_series" else "classification")
    given = {key: VALUES[key] for key in set_parameters(name) if not (key == "classes" and task != "classification")}
    spec = parse_spec(spec_document(task=task, data={"source": {"type": "builtin", "name": name, **given}}))
    data = spec.data.source.load(task=task, seed=0)
    assert len(data) == 200
    if "length" in given and data.kind == "sequence":
        assert data.sample_shape == (8, 1)
    if "classes" in given:
        assert len(data.classes) == 4
    noisier = spec.data.source.model_copy(update={"noise": 0.0}).load(task=task, seed=0)
    if data.kind == "text":
        assert data.y.tolist() != noisier.y.tolist(), "toy_text's noise flips labels"
    else:
        assert not np.array_equal(data.x.numpy(), noisier.x.numpy()), "noise changes the samples"


def test_defaults_are_the_sets_own_and_the_resolved_spec_parses_again():
    moons = parse_spec({"task": "binary", "data": {"source": {"type": "builtin", "name": "moons"}}})
    assert (moons.data.source.n_samples, moons.data.source.noise) == (1000, 0.1)
    assert moons.data.source.classes is None and moons.data.source.length is None
    digits = parse_spec({"data": {"source": {"type": "builtin", "name": "digits"}}})
    assert len(digits.data.source.load(task="classification", seed=0)) == 1797
    for spec in (moons, digits):
        assert parse_spec(spec.model_dump(mode="json")) == spec


def test_sine_series_classes_apply_to_classification_only():
    source = {"type": "builtin", "name": "sine_series", "n_samples": 100, "classes": 4}
    classified = parse_spec({"data": {"source": source}}).data.source.load(task="classification", seed=0)
    assert len(classified.classes) == 4
    for task in ("regression", "binary"):
        spec = parse_spec({"task": task, "data": {"source": source}})
        with pytest.raises(SpecInvalid) as info:
            spec.data.source.load(task=task, seed=0)
        assert info.value.errors[0].pointer == "/data/source/classes"
    default = parse_spec({"data": {"source": {**source, "classes": None}}}).data.source.load(
        task="classification", seed=0
    )
    assert len(default.classes) == 3


def test_the_data_guide_lists_each_sets_parameters_and_defaults():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    guide = guide.split("`builtin` names:")[1].split("\n\n")[1]  # the table of built-in sets
    listed: dict[str, dict[str, str]] = {}
    for names, parameters in re.findall(r"^\| (`\w+`(?:, `\w+`)*) \| [^|]+ \| ([^|]+) \| [^|]+ \|$", guide, re.M):
        found = dict(re.findall(r"`(\w+)` \(([^;)]+)", parameters))
        listed.update({name: found for name in re.findall(r"`(\w+)`", names)})
    assert set(listed) == set(BUILTIN_SETS.names())
    for name, documented in listed.items():
        defaults = {
            key: "the whole set" if value is None else str(value) for key, value in set_parameters(name).items()
        }
        if name == "sine_series":
            defaults["classes"] = "3"  # None in the signature: 3 bands for classification
        assert documented == defaults, name
