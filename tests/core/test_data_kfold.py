"""k-fold cross-validation: k trainings on disjoint validation folds that cover the non-test data
once, preprocessing fitted per fold, mean ± std reported, and the CLI's per-fold table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from core.engine.checkpoint import CheckpointPolicy
from core.engine.events import Callback
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import KFoldResult, run_experiment, train_run
from core.errors import SpecInvalid
from core.run_folder import PREPROCESSING, fold_folder
from core.spec.schema import parse_spec
from tests.core.helpers import IRIS, spec_document


def kfold_document(k: int = 5, **split: object) -> dict:
    return spec_document(
        epochs=2,
        data={"source": IRIS, "batch_size": 32, "split": {"kfold": k, "test": 0.2, **split}},
        model={"type": "mlp", "hidden": [8], "dropout": 0.0},
    )


def run_kfold(spec, folder, **kwargs) -> KFoldResult:
    result = train_run(plan_experiment(spec), folder=folder, device="cpu", **kwargs)
    assert isinstance(result, KFoldResult)
    return result


class Counter(Callback):
    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, state) -> None:
        self.fits += 1


def test_k_trainings_on_disjoint_folds_covering_the_data_once(tmp_path):
    spec = parse_spec(kfold_document(5))
    counter = Counter()
    result = run_kfold(spec, tmp_path, callbacks=[counter])
    assert result.status == "succeeded" and counter.fits == 5 and len(result.folds) == 5
    test = set(result.test_indices.tolist())
    assert len(test) == 30
    held = [set(v.tolist()) for _, v in result.fold_indices]
    assert all(a.isdisjoint(b) for i, a in enumerate(held) for b in held[i + 1 :])
    assert set().union(*held) == set(range(150)) - test, "the folds cover every non-test row once"
    assert sum(len(h) for h in held) == 120
    for i, ((train, validation), fold) in enumerate(zip(result.fold_indices, result.folds, strict=True), start=1):
        assert set(train.tolist()) == set(range(150)) - test - set(validation.tolist())
        assert fold["validation_samples"] == len(validation) and fold["test_samples"] == 30
        # preprocessing is fitted on this fold's training rows only (and saved with the fold's model)
        fitted = load_file(fold_folder(tmp_path, i) / PREPROCESSING)
        torch.testing.assert_close(fitted["0.mean"], result.plan.data.x[torch.as_tensor(train)].mean(0))
    folds = {len(v) for _, v in result.fold_indices}
    assert folds == {24}
    classes = [np.bincount(result.plan.data.y[torch.as_tensor(v)].numpy(), minlength=3) for _, v in result.fold_indices]
    assert all(c.min() >= 7 for c in classes), "stratified folds"


def test_kfold_reports_each_fold_and_mean_and_std(tmp_path):
    result = run_kfold(parse_spec(kfold_document(3)), tmp_path)
    summary = result.summary()
    assert summary["kfold"] == 3 and [f["fold"] for f in summary["folds"]] == [1, 2, 3]
    for name in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "train_loss"):
        values = [fold[name] for fold in summary["folds"]]
        assert summary["mean"][name] == pytest.approx(np.mean(values))
        assert summary["std"][name] == pytest.approx(np.std(values))
    assert summary["std"]["val_loss"] > 0
    json.dumps(summary)


def test_kfold_without_test_split_and_with_early_stopping(tmp_path):
    document = kfold_document(4, test=0.0)
    document["regularization"] = {"early_stopping": {"monitor": "val_loss", "patience": 1}}
    spec = parse_spec(document)
    result = run_kfold(spec, tmp_path)
    assert result.status == "succeeded" and len(result.test_indices) == 0
    assert sum(len(v) for _, v in result.fold_indices) == 150
    assert all("test_loss" not in fold for fold in result.folds)


def test_kfold_with_validation_is_a_validation_error_and_the_resolved_spec_revalidates():
    report = validate_document(kfold_document(5, validation=0.2))
    assert report["errors"][0]["pointer"] == "/data/split/validation"
    assert "kfold" in report["errors"][0]["message"]
    resolved = validate_document(kfold_document(5))["spec"]
    assert resolved["data"]["split"]["validation"] == 0.0 and resolved["data"]["split"]["kfold"] == 5
    assert validate_document(resolved)["valid"]
    assert validate_document(kfold_document(5, validation=0.0))["valid"]
    assert validate_document(kfold_document(1))["errors"][0]["pointer"] == "/data/split/kfold"


def test_more_folds_than_a_class_has_members_is_refused(tmp_path):
    with pytest.raises(SpecInvalid) as info:
        run_kfold(parse_spec(kfold_document(45)), tmp_path)
    assert info.value.errors[0].pointer == "/data/split/kfold"


def test_a_kfold_spec_does_not_train_once_by_mistake():
    spec = parse_spec(kfold_document(3))
    with pytest.raises(ValueError, match="train_run"):
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


class StopInFold(Callback):
    """Stops the run at the end of epoch 1 of fold ``fold`` (as a killed worker would stop it)."""

    def __init__(self, fold: int) -> None:
        self.fold = fold

    def on_epoch_end(self, state) -> None:
        if state.fold == self.fold and state.epoch == 1:
            state.stop("stopped by the test", status="cancelled")


def test_a_resumed_kfold_run_skips_finished_folds_and_continues_the_stopped_one(tmp_path):
    spec = parse_spec(kfold_document(3))
    straight = run_kfold(spec, tmp_path / "straight")
    stopped = run_kfold(spec, tmp_path / "run", callbacks=[StopInFold(2)], checkpoints=CheckpointPolicy(1, 0.0))
    assert stopped.status == "cancelled" and len(stopped.folds) == 2
    assert (fold_folder(tmp_path / "run", 2) / "checkpoint").is_dir()
    counter = Counter()
    resumed = run_kfold(spec, tmp_path / "run", callbacks=[counter], resume=True)
    assert resumed.status == "succeeded" and counter.fits == 2, "fold 1 is not trained again"
    for ours, theirs in zip(resumed.folds, straight.folds, strict=True):
        assert {k: v for k, v in ours.items() if k != "seconds"} == {k: v for k, v in theirs.items() if k != "seconds"}
