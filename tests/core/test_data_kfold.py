"""k-fold cross-validation: k trainings on disjoint validation folds that cover the non-test data
once, preprocessing fitted per fold, mean ± std reported, and the CLI's per-fold table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from core.engine.events import Callback
from core.engine.run import run_experiment, run_kfold
from core.spec.errors import SpecInvalid
from core.spec.validate import parse_spec, plan_experiment, validate_document
from tests.core.helpers import IRIS, spec_document


def kfold_document(k: int = 5, **split: object) -> dict:
    return spec_document(
        epochs=2,
        data={"source": IRIS, "batch_size": 32, "split": {"kfold": k, "test": 0.2, **split}},
        model={"type": "mlp", "hidden": [8], "dropout": 0.0},
    )


class Counter(Callback):
    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, state) -> None:
        self.fits += 1


def test_k_trainings_on_disjoint_folds_covering_the_data_once():
    spec = parse_spec(kfold_document(5))
    counter = Counter()
    result = run_kfold(spec, device="cpu", callbacks_for=lambda fold: [counter])
    assert result.status == "succeeded" and counter.fits == 5 and len(result.folds) == 5
    test = set(result.test_indices.tolist())
    assert len(test) == 30
    held = [set(v.tolist()) for _, v in result.fold_indices]
    assert all(a.isdisjoint(b) for i, a in enumerate(held) for b in held[i + 1 :])
    assert set().union(*held) == set(range(150)) - test, "the folds cover every non-test row once"
    assert sum(len(h) for h in held) == 120
    for (train, validation), fold in zip(result.fold_indices, result.folds, strict=True):
        assert set(train.tolist()) == set(range(150)) - test - set(validation.tolist())
        assert len(fold.splits.validation) == len(validation) and len(fold.splits.test) == 30
        # preprocessing is fitted on this fold's training rows only
        torch.testing.assert_close(
            fold.splits.fitted_preprocessing["0.mean"], result.plan.data.x[torch.as_tensor(train)].mean(0)
        )
    folds = {len(v) for _, v in result.fold_indices}
    assert folds == {24}
    classes = [np.bincount(result.plan.data.y[torch.as_tensor(v)].numpy(), minlength=3) for _, v in result.fold_indices]
    assert all(c.min() >= 7 for c in classes), "stratified folds"


def test_kfold_reports_each_fold_and_mean_and_std():
    result = run_kfold(parse_spec(kfold_document(3)), device="cpu")
    summary = result.summary()
    assert summary["kfold"] == 3 and [f["fold"] for f in summary["folds"]] == [1, 2, 3]
    for name in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "train_loss"):
        values = [fold[name] for fold in summary["folds"]]
        assert summary["mean"][name] == pytest.approx(np.mean(values))
        assert summary["std"][name] == pytest.approx(np.std(values))
    assert summary["std"]["val_loss"] > 0
    json.dumps(summary)


def test_kfold_without_test_split_and_with_early_stopping():
    document = kfold_document(4, test=0.0)
    document["regularization"] = {"early_stopping": {"monitor": "val_loss", "patience": 1}}
    spec = parse_spec(document)
    result = run_kfold(spec, device="cpu")
    assert result.status == "succeeded" and len(result.test_indices) == 0
    assert sum(len(v) for _, v in result.fold_indices) == 150
    assert all("test_loss" not in fold.final for fold in result.folds)


def test_kfold_with_validation_is_a_validation_error_and_the_resolved_spec_revalidates():
    report = validate_document(kfold_document(5, validation=0.2))
    assert report["errors"][0]["pointer"] == "/data/split/validation"
    assert "kfold" in report["errors"][0]["message"]
    resolved = validate_document(kfold_document(5))["spec"]
    assert resolved["data"]["split"]["validation"] == 0.0 and resolved["data"]["split"]["kfold"] == 5
    assert validate_document(resolved)["valid"]
    assert validate_document(kfold_document(5, validation=0.0))["valid"]
    assert validate_document(kfold_document(1))["errors"][0]["pointer"] == "/data/split/kfold"


def test_more_folds_than_a_class_has_members_is_refused():
    with pytest.raises(SpecInvalid) as info:
        run_kfold(parse_spec(kfold_document(45)), device="cpu")
    assert info.value.errors[0].pointer == "/data/split/kfold"


def test_a_kfold_spec_does_not_train_once_by_mistake():
    spec = parse_spec(kfold_document(3))
    with pytest.raises(ValueError, match="run_kfold"):
        run_experiment(spec, device="cpu", plan=plan_experiment(spec))


def test_cli_trains_a_kfold_spec(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(kfold_document(3)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "spec.json"), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and len(summary["folds"]) == 3
    assert set(summary["mean"]) >= {"val_loss", "val_accuracy", "test_loss"} and set(summary["std"]) == set(
        summary["mean"]
    )
    assert (out / "fold_3" / "model.safetensors").exists() and (out / "fold_1" / "metrics.jsonl").exists()
    assert json.loads((out / "summary.json").read_text())["kfold"] == 3

    result = CliRunner().invoke(app, ["train", str(tmp_path / "spec.json"), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mean ± std" in result.stdout and "3-fold cross-validation" in result.stdout
