"""The notes' lessons end to end: each example spec trains (CPU, one torch thread) and gets its
verdict, a healthy run gets no warning at any epoch, and a lesson's suggestion turns its spec into
the example that fixes it (or trains a run without the verdict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from core.engine.run import RunResult, run_experiment
from core.insight.series import RunSeries, from_points
from core.insight.verdicts import Verdict, assess
from core.spec.schema import ExperimentSpec, parse_spec
from core.spec.trials import trial_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


pytestmark = pytest.mark.usefixtures("one_thread")


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def lr_trial(lr: float, **overrides: Any) -> dict[str, Any]:
    """The trial of examples/lr_sweep.json with ``optimizer.lr`` = ``lr``."""
    sweep = example("lr_sweep")
    assert lr in sweep["sweep"]["parameters"]["optimizer.lr"]
    resolved = parse_spec(sweep).model_dump(mode="json", exclude={"sweep"})
    return {**trial_document(sweep, resolved, {"optimizer.lr": lr}), **overrides}


def train(document: dict[str, Any]) -> tuple[ExperimentSpec, RunResult, RunSeries]:
    spec = parse_spec(document)
    result = run_experiment(spec, device="cpu")
    series = from_points((p.step, p.epoch, p.name, p.value) for p in result.history.points)
    return result.plan.spec, result, series


def final_verdicts(document: dict[str, Any]) -> tuple[ExperimentSpec, list[Verdict]]:
    spec, result, series = train(document)
    return spec, assess(spec, series, failure=result.failure, final=True)


def only(verdicts: list[Verdict], code: str) -> Verdict:
    found = [v for v in verdicts if v.code == code]
    assert len(found) == 1, [(v.code, v.message) for v in verdicts]
    return found[0]


def patched(spec: ExperimentSpec, verdict: Verdict) -> dict[str, Any]:
    """The resolved spec with the verdict's suggestion applied; it validates."""
    document = jsonpatch.apply_patch(spec.model_dump(mode="json"), verdict.suggestion)
    parse_spec(document)
    return document


def same_but_name(document: dict[str, Any], other: dict[str, Any]) -> None:
    """Both documents resolve to the same spec, names aside."""
    ours, theirs = (parse_spec(d).model_dump(mode="json", exclude={"name"}) for d in (document, other))
    assert jsonpatch.make_patch(theirs, ours).patch == []


def through_epoch(series: RunSeries, epoch: int) -> RunSeries:
    """The series as they stood at the end of ``epoch`` (what the live verdicts see)."""
    return from_points(
        (step, e, name, value)
        for name, points in series.items()
        for step, e, value in zip(points.step, points.epoch, points.value, strict=True)
        if e <= epoch
    )


def severe(verdicts: list[Verdict]) -> list[str]:
    return [v.code for v in verdicts if v.severity != "info"]


# --- initialisation ----------------------------------------------------------------------------------


def test_zero_init_gets_symmetric_units_and_kaiming_init_is_its_fix():
    spec, verdicts = final_verdicts(example("zero_init"))
    verdict = only(verdicts, "symmetric_units")
    assert verdict.severity == "error"
    assert verdict.evidence["zero_gradient_weights"] == ["1_dense.weight", "3_dense.weight", "5_dense.weight"]
    assert verdict.evidence["constant_layers"] == ["2_activation", "4_activation"]
    assert severe(verdicts) == ["symmetric_units"], "the dead units and the flat loss follow from it"
    same_but_name(patched(spec, verdict), example("kaiming_relu"))


def test_deep_sigmoid_gets_vanishing_gradients_and_relu_kaiming_is_its_fix():
    spec, verdicts = final_verdicts(example("deep_sigmoid"))
    verdict = only(verdicts, "vanishing_gradients")
    gradient = verdict.evidence["gradient"]
    assert (gradient["first"], gradient["last"]) == ("1_dense.weight", "21_dense.weight")
    assert gradient["first_norm"] < 1e-5 < 0.1 < gradient["last_norm"]  # README: 9.9e-7 vs 0.54
    assert verdict.pointer == "/model/activation"
    same_but_name(patched(spec, verdict), example("deep_relu_kaiming"))


def test_tanh_small_init_collapses_and_the_large_one_saturates_and_explodes():
    small_spec, small = final_verdicts(example("tanh_init_small"))
    collapse = only(small, "vanishing_gradients").evidence["activations"]
    assert collapse["last_std_at_init"] < 1e-4 < 0.05 < collapse["first_std_at_init"]  # 7.8e-6 vs 0.077
    assert "saturated_units" not in [v.code for v in small]
    same_but_name(patched(small_spec, only(small, "vanishing_gradients")), example("tanh_init_xavier"))

    large_spec, large = final_verdicts(example("tanh_init_large"))
    saturated = only(large, "saturated_units")
    assert min(saturated.evidence["saturated_share"].values()) > 0.8  # README: 0.90 in layers 2-6
    assert only(large, "exploding_gradients").evidence["ratio"] > 10
    assert only(large, "init_loss_off").evidence["init_loss"] > 20  # 24.3 against ln 10
    assert "vanishing_gradients" not in [v.code for v in large]
    for code in ("saturated_units", "exploding_gradients", "init_loss_off"):
        same_but_name(patched(large_spec, only(large, code)), example("tanh_init_xavier"))

    _, xavier = final_verdicts(example("tanh_init_xavier"))
    assert severe(xavier) == []


# --- learning rate -----------------------------------------------------------------------------------


# lr 2.0 is chaotic: which way a run goes (a blow-up, a rise, a collapse to chance) hangs on the
# last bits of the arithmetic, which differ between CPUs. So the lesson is checked over seeds, as
# the notes would compare curves: nearly every one is lr_too_high, none is read as overfitting.
LR_2_SEEDS = range(8)


def test_lr_2_gets_lr_too_high_over_seeds_and_a_tenth_of_it_trains():
    found = {seed: final_verdicts(lr_trial(2.0, seed=seed)) for seed in LR_2_SEEDS}
    codes = {seed: [v.code for v in verdicts] for seed, (_, verdicts) in found.items()}
    high = [seed for seed, names in codes.items() if "lr_too_high" in names]
    assert len(high) >= len(LR_2_SEEDS) - 1, codes  # 7 of 8 here (seed 4 learns slowly: underfitting)
    assert not any("overfitting" in names for names in codes.values()), codes

    spec, verdicts = found[high[0]]
    verdict = only(verdicts, "lr_too_high")
    assert verdict.severity in ("warning", "error")
    assert verdict.suggestion == [{"op": "replace", "path": "/optimizer/lr", "value": 0.2}]
    retry = patched(spec, verdict)
    assert jsonpatch.make_patch(spec.model_dump(mode="json"), retry).patch == verdict.suggestion
    _, retried = final_verdicts(retry)
    assert "lr_too_high" not in [v.code for v in retried]
    assert severe(retried) == []


def test_lr_2_blows_the_loss_up_past_where_it_started():
    """Seed 8: epoch 1's mean loss is 139.6 against 3.08 before training (README)."""
    _, verdicts = final_verdicts(lr_trial(2.0, seed=8))
    evidence = only(verdicts, "lr_too_high").evidence
    assert evidence["epoch"] == 1 and evidence["factor"] > 10, evidence


def test_lr_2_with_diagnostics_also_kills_relus():
    diagnostics = {"activations": True, "gradients": True, "every_n_steps": 20}
    for seed in range(4):
        _, verdicts = final_verdicts(lr_trial(2.0, seed=seed, diagnostics=diagnostics))
        dead = only(verdicts, "dead_relus")
        assert dead.pointer == "/optimizer/lr", "alive at init, dead after a few huge steps"
        assert "update_ratio_median" in only(verdicts, "lr_too_high").evidence


@pytest.mark.parametrize("diagnostics", [False, True])
def test_lr_0_001_gets_lr_too_low(diagnostics):
    overrides = {"diagnostics": {"activations": False, "gradients": True}} if diagnostics else {}
    spec, verdicts = final_verdicts(lr_trial(0.001, **overrides))
    verdict = only(verdicts, "lr_too_low")
    assert verdict.evidence["fall"] < 0.25
    assert patched(spec, verdict)["optimizer"]["lr"] == 0.01
    if diagnostics:
        assert verdict.evidence["update_ratio_median"] < 5e-4
    else:
        assert "update_ratio_median" not in verdict.evidence


@pytest.mark.parametrize("lr", [0.5, 0.1])
def test_the_sweeps_best_learning_rates_get_no_lr_verdict(lr):
    _, verdicts = final_verdicts(lr_trial(lr))
    assert severe(verdicts) == []


# --- overfitting -------------------------------------------------------------------------------------


def test_overfit_plain_gets_overfitting_and_overfit_regularized_does_not():
    spec, _, series = train(example("overfit_plain"))
    verdict = only(assess(spec, series, final=True), "overfitting")
    assert verdict.severity == "warning"
    assert verdict.evidence["rise"] > 0.2  # README: val_loss 0.43 at best, 0.75 at the end
    assert {op["path"] for op in verdict.suggestion} == {"/model/dropout", "/regularization/l2"}
    assert patched(spec, verdict)["model"]["dropout"] == 0.5

    regularized_spec, regularized, regularized_series = train(example("overfit_regularized"))
    for epoch in range(1, regularized.epochs + 1):
        live = assess(regularized_spec, through_epoch(regularized_series, epoch))
        assert "overfitting" not in [v.code for v in live], epoch
    assert severe(assess(regularized_spec, regularized_series, final=True)) == []


# --- a healthy run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits_mlp", "kaiming_relu"])
def test_a_healthy_digits_run_gets_no_warning_at_any_epoch(name):
    spec, result, series = train(example(name))
    assert result.final["val_accuracy"] > 0.94
    for epoch in range(1, result.epochs + 1):
        live = assess(spec, through_epoch(series, epoch))
        assert severe(live) == [], (epoch, [v.message for v in live])
    assert severe(assess(spec, series, final=True)) == []
