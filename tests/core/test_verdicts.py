"""Verdict rules on synthetic series: each code fires on the series that shows it (with its
evidence, pointer and suggestion), not on a healthy run, not live before it is certain, and not
without the series it rests on. Every suggestion applies to the resolved spec and validates."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonpatch
import pytest

from core.insight import thresholds as t
from core.insight.series import from_points, layer_index, per_layer, trailing_mean
from core.insight.verdicts import Verdict, assess
from core.spec.schema import ExperimentSpec, parse_spec

STEPS_PER_EPOCH = 17  # digits' training split at batch size 64
EVERY = 20  # diagnostics every 20 steps
HIDDEN = ["1_dense.weight", "3_dense.weight", "5_dense.weight"]
ACTS = ["2_activation", "4_activation"]


def spec_of(**overrides: Any) -> ExperimentSpec:
    """A digits MLP spec (SGD, ReLU, Kaiming, constant lr); ``model``/``optimizer``/... merge into it
    (an object of another ``type`` replaces it)."""
    document: dict[str, Any] = {
        "name": "synthetic",
        "epochs": 10,
        "data": {"source": {"type": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"type": "mlp", "hidden": [128, 64], "activation": {"type": "relu"}, "init": {"type": "kaiming"}},
        "optimizer": {"type": "sgd", "lr": 0.05},
        "schedule": {"type": "constant"},
        "regularization": {"l2": 0.0, "early_stopping": None},
    }
    for key, value in overrides.items():
        base = document.get(key)
        merge = (
            isinstance(base, dict)
            and isinstance(value, dict)
            and value.get("type", base.get("type")) == base.get("type")
        )
        document[key] = {**base, **value} if merge else value
    return parse_spec(document)


def run_points(
    epochs: dict[str, list[float]] | None = None,
    every: dict[str, list[float]] | None = None,
    init_loss: float | None = None,
    expected: float | None = math.log(10),
) -> list[tuple[int, int, str, float]]:
    """Points as the engine records them: per-epoch metrics at each epoch's last step, diagnostics
    every ``EVERY`` steps from step 0, the initial loss (and ln C) at step 0."""
    points = []
    if init_loss is not None:
        points.append((0, 0, "init_loss", init_loss))
        if expected is not None:
            points.append((0, 0, "init_loss_expected", expected))
    for name, values in (epochs or {}).items():
        points += [(e * STEPS_PER_EPOCH, e, name, v) for e, v in enumerate(values, 1)]
    for name, values in (every or {}).items():
        points += [(i * EVERY, i * EVERY // STEPS_PER_EPOCH + 1, name, v) for i, v in enumerate(values)]
    return points


def series_of(**kwargs: Any):
    return from_points(run_points(**kwargs))


def healthy_epochs(n: int = 10) -> dict[str, list[float]]:
    train = [1.2 * 0.55**e + 0.01 for e in range(n)]
    val = [0.42 * 0.8**e + 0.25 for e in range(n)]
    return {"train_loss": train, "val_loss": val, "lr": [0.05] * n}


def healthy_every(measurements: int = 9, layers: int = 3) -> dict[str, list[float]]:
    every: dict[str, list[float]] = {}
    for i, weight in enumerate(HIDDEN[:layers]):
        every[f"grad_norm/{weight}"] = [1.5 * 0.7**k * (1 + 0.2 * i) for k in range(measurements)]
        every[f"update_ratio/{weight}"] = [1e-3 * (1 + 0.5 * i)] * measurements
    for layer in ACTS[: layers - 1]:
        every[f"act/{layer}/mean"] = [0.5] * measurements
        every[f"act/{layer}/std"] = [0.85] * measurements
        every[f"act/{layer}/dead"] = [0.02] * measurements
    return every


def codes(verdicts: list[Verdict]) -> list[str]:
    return [v.code for v in verdicts]


def only(verdicts: list[Verdict], code: str) -> Verdict:
    found = [v for v in verdicts if v.code == code]
    assert len(found) == 1, codes(verdicts)
    return found[0]


def applied(spec: ExperimentSpec, verdict: Verdict) -> dict[str, Any]:
    """The resolved spec with the suggestion applied; it must validate, and the pointer names a value."""
    resolved = spec.model_dump(mode="json")
    patched = jsonpatch.apply_patch(resolved, verdict.suggestion)
    parse_spec(patched)
    assert verdict.pointer is not None
    assert jsonpatch.JsonPointer(verdict.pointer).resolve(resolved, default=KeyError) is not KeyError
    return patched


def warnings_of(verdicts: list[Verdict]) -> list[str]:
    return [v.code for v in verdicts if v.severity != "info"]


# --- series -------------------------------------------------------------------------------------


def test_from_points_orders_each_series_by_step_and_keeps_the_last_value_of_an_epoch():
    series = from_points([(34, 2, "train_loss", 0.5), (17, 1, "train_loss", 0.9), (34, 2, "train_loss", 0.4)])
    assert series["train_loss"].step == [17, 34, 34]
    assert series["train_loss"].per_epoch() == [(1, 0.9), (2, 0.4)]


def test_layers_are_ordered_by_index_not_by_name():
    series = from_points([(0, 1, f"grad_norm/{i}_dense.weight", 1.0) for i in (11, 3, 1, 21)])
    assert per_layer(series, "grad_norm/") == [f"grad_norm/{i}_dense.weight" for i in (1, 3, 11, 21)]
    assert layer_index("act/12_activation/std") == 12
    assert trailing_mean([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]


# --- a healthy run, and nothing without the series ------------------------------------------------


def test_a_healthy_run_gets_no_warning_live_or_at_the_end():
    spec = spec_of()
    points = run_points(epochs=healthy_epochs(), every=healthy_every(), init_loss=2.6)
    for epoch in range(1, 11):
        live = assess(spec, from_points(p for p in points if p[1] <= epoch))
        assert warnings_of(live) == [], (epoch, [v.message for v in live])
    assert warnings_of(assess(spec, from_points(points), final=True)) == []


def test_no_series_no_verdict():
    assert assess(spec_of(), {}, final=True) == []
    assert assess(spec_of(model={"init": {"type": "zeros"}}), series_of(epochs=healthy_epochs()), final=True) == []


def test_gradient_and_activation_verdicts_need_diagnostics():
    """The curves of a deep sigmoid net that does not learn say nothing about its gradients."""
    spec = spec_of(model={"activation": {"type": "sigmoid"}, "hidden": [64] * 10})
    flat = {"train_loss": [2.31] * 10, "val_loss": [2.30] * 10}
    found = codes(assess(spec, series_of(epochs=flat), final=True))
    assert not {"vanishing_gradients", "exploding_gradients", "saturated_units", "dead_relus"} & set(found)


def test_verdicts_are_json_and_most_severe_first():
    spec = spec_of(model={"init": {"type": "normal", "std": 1.0}, "activation": {"type": "tanh"}})
    every = healthy_every()
    every["grad_norm/1_dense.weight"] = [float("inf")] * 9
    every["act/2_activation/saturated"] = [0.9] * 9
    verdicts = assess(spec, series_of(epochs=healthy_epochs(), every=every, init_loss=24.3), final=True)
    ranks = [{"error": 0, "warning": 1, "info": 2}[v.severity] for v in verdicts]
    assert ranks == sorted(ranks) and ranks[0] == 0
    for verdict in verdicts:
        data = verdict.as_dict()
        assert set(data) == {"code", "severity", "message", "evidence", "pointer", "suggestion"}
        json.dumps(data, allow_nan=False)


# --- lr_too_high ------------------------------------------------------------------------------------


def test_lr_too_high_when_the_run_diverged():
    spec = spec_of(optimizer={"lr": 2.0})
    failure = "diverged: the training loss became nan by step 9 (epoch 1, lr 2); lower the learning rate"
    verdict = only(assess(spec, series_of(), failure=failure, final=True), "lr_too_high")
    assert verdict.severity == "error"
    assert verdict.pointer == "/optimizer/lr"
    assert verdict.suggestion == [{"op": "replace", "path": "/optimizer/lr", "value": 0.2}]
    assert verdict.evidence["failure"] == failure
    assert applied(spec, verdict)["optimizer"]["lr"] == 0.2


def test_lr_too_high_live_on_a_non_finite_loss_before_the_failure_is_stored():
    series = from_points([(17, 1, "train_loss", 2.9), (50, 3, "train_loss_running", float("nan"))])
    verdict = only(assess(spec_of(), series), "lr_too_high")
    assert verdict.severity == "error"
    assert verdict.evidence["non_finite"] == {"train_loss_running": {"step": 50, "value": "nan"}}


def test_lr_too_high_on_unscaled_regression_targets_points_at_target_preprocess():
    spec = spec_of(task="regression", data={"source": {"type": "builtin", "name": "diabetes"}})
    failure = (
        "diverged: the training loss became inf by step 9 (epoch 1, lr 0.01); the training targets are far "
        'from unit scale (mean 151, std 77): scale them with /data/target_preprocess [{"type": "standardize"}]'
    )
    verdict = only(assess(spec, series_of(), failure=failure, final=True), "lr_too_high")
    assert verdict.pointer == "/data/target_preprocess"
    assert applied(spec, verdict)["data"]["target_preprocess"] == [{"type": "standardize"}]


BOUNCING = [2.712, 2.903, 2.337, 2.322, 2.274]  # lr 2.0's first five epochs


def test_lr_too_high_when_the_loss_rises_early_and_makes_no_progress():
    spec = spec_of(optimizer={"lr": 2.0}, epochs=5)
    verdict = only(assess(spec, series_of(epochs={"train_loss": BOUNCING}), final=True), "lr_too_high")
    assert verdict.severity == "warning"
    assert verdict.evidence["rises"] == [{"epoch": 2, "from": 2.712, "to": 2.903}]
    assert verdict.evidence["end_over_start"] == pytest.approx(2.274 / 2.712, rel=1e-3)
    assert "2.71 → 2.9 at epoch 2" in verdict.message
    assert applied(spec, verdict)["optimizer"]["lr"] == 0.2


def test_a_bouncing_loss_is_lr_too_high_not_overfitting():
    spec = spec_of(optimizer={"lr": 2.0}, epochs=5)
    val = [4.33, 2.08, 2.2, 2.25, 2.31]  # lr 2.0's: lowest at epoch 2, then up while train_loss falls
    found = codes(assess(spec, series_of(epochs={"train_loss": BOUNCING, "val_loss": val}), final=True))
    assert "lr_too_high" in found and "overfitting" not in found


def test_lr_too_high_waits_for_the_early_window_live():
    spec = spec_of(optimizer={"lr": 2.0}, epochs=30)
    for epoch in range(2, t.EARLY_EPOCHS):
        assert "lr_too_high" not in codes(assess(spec, series_of(epochs={"train_loss": BOUNCING[:epoch]})))
    assert "lr_too_high" in codes(assess(spec, series_of(epochs={"train_loss": BOUNCING})))


def test_a_bump_in_a_falling_curve_is_not_lr_too_high():
    bumpy = [1.569, 2.428, 0.667, 0.618, 0.658, 0.521]  # overfit_plain: 3 batches an epoch
    assert "lr_too_high" not in codes(assess(spec_of(), series_of(epochs={"train_loss": bumpy}), final=True))


BLOWN_UP = [139.61, 2.326, 2.31, 2.312, 2.311]  # lr 2.0, seed 8: from 3.08 before training


def test_lr_too_high_when_an_epoch_blows_the_loss_up_past_where_it_started():
    spec = spec_of(optimizer={"lr": 2.0}, epochs=30)
    series = series_of(epochs={"train_loss": BLOWN_UP[:1]}, init_loss=3.08)
    verdict = only(assess(spec, series), "lr_too_high")  # live, at epoch 1: it is already certain
    assert verdict.evidence == {"lr": 2.0, "start_loss": 3.08, "epoch": 1, "train_loss": 139.6, "factor": 45.33}
    assert applied(spec, verdict)["optimizer"]["lr"] == 0.2
    final = assess(spec, series_of(epochs={"train_loss": BLOWN_UP}, init_loss=3.08), final=True)
    assert codes(final) == ["lr_too_high"]  # not underfitting: the cause is named


def test_a_blow_up_the_run_recovered_from_is_not_lr_too_high():
    recovered = [1.569, 2.428, 0.667, 0.618, 0.658, 0.3, 0.19]  # overfit_plain on 3 batches an epoch

    def series(epochs: int):
        return series_of(epochs={"train_loss": recovered[:epochs]}, init_loss=1.087, expected=math.log(2))

    assert "lr_too_high" in codes(assess(spec_of(), series(2)))  # live at epoch 2: 2.43 is 2.2× the start
    assert "lr_too_high" not in codes(assess(spec_of(), series(len(recovered)), final=True))


def test_a_loss_back_at_chance_is_not_overfitting():
    """val_loss lowest at epoch 2, then at ln 10 again while the training loss sits there too: the net
    collapsed (what lr 2.0 did on one CPU), it memorised nothing."""
    train, val = [2.74, 2.45, 2.33, 2.31, 2.305], [2.3, 2.07, 2.2, 2.25, 2.31]
    series = series_of(epochs={"train_loss": train, "val_loss": val}, init_loss=2.9)
    assert "overfitting" not in codes(assess(spec_of(epochs=5), series, final=True))
    fitted = series_of(epochs={"train_loss": [0.9, 0.5, 0.3, 0.2, 0.1], "val_loss": val}, init_loss=2.9)
    assert "overfitting" in codes(assess(spec_of(epochs=5), fitted, final=True))


def test_lr_too_high_points_at_a_one_cycle_peak():
    spec = spec_of(schedule={"type": "one_cycle", "max_lr": 0.5})
    verdict = only(assess(spec, series_of(epochs={"train_loss": BOUNCING}), final=True), "lr_too_high")
    assert verdict.pointer == "/schedule/max_lr"
    assert applied(spec, verdict)["schedule"]["max_lr"] == 0.05


# --- lr_too_low ----------------------------------------------------------------------------------------


SLOW = [3.106, 2.975, 2.862, 2.763, 2.673]  # lr 0.001's five epochs


def slow_every(ratio: float) -> dict[str, list[float]]:
    every = healthy_every(measurements=5)
    for weight in HIDDEN:
        every[f"update_ratio/{weight}"] = [ratio] * 5
    return every


def test_lr_too_low_when_the_loss_falls_slowly_and_linearly_with_tiny_updates():
    spec = spec_of(optimizer={"lr": 0.001}, epochs=5)
    series = series_of(epochs={"train_loss": SLOW}, every=slow_every(2e-4), init_loss=2.85)
    verdict = only(assess(spec, series, final=True), "lr_too_low")
    assert verdict.severity == "warning"
    assert verdict.pointer == "/optimizer/lr"
    assert verdict.evidence["fall"] == pytest.approx((3.106 - 2.673) / 3.106, rel=1e-3)
    assert verdict.evidence["update_ratio_median"] == 2e-4
    assert applied(spec, verdict)["optimizer"]["lr"] == 0.01


def test_lr_too_low_on_the_curve_alone_without_diagnostics():
    verdict = only(assess(spec_of(), series_of(epochs={"train_loss": SLOW}), final=True), "lr_too_low")
    assert "update_ratio_median" not in verdict.evidence


@pytest.mark.parametrize(
    ("losses", "ratio", "why"),
    [
        (SLOW, 1.5e-3, "the steps are not small"),
        ([2.701, 2.063, 1.677, 1.399, 1.187], None, "lr 0.01 falls fast and decelerates"),
        ([2.304] * 5, None, "a flat curve is stuck, not slow"),
        ([2.5, 2.44, 2.40, 2.37, 2.35], None, "a curve that decelerates (to half its rate) is converging"),
    ],
)
def test_not_lr_too_low(losses, ratio, why):
    every = slow_every(ratio) if ratio else None
    assert "lr_too_low" not in codes(assess(spec_of(), series_of(epochs={"train_loss": losses}, every=every))), why


def test_lr_too_low_needs_enough_steps():
    few = from_points([(e, e, "train_loss", v) for e, v in enumerate(SLOW, 1)])  # one step an epoch
    assert "lr_too_low" not in codes(assess(spec_of(), few, final=True))


# --- overfitting ------------------------------------------------------------------------------------


def overfit_epochs(n: int = 40, best: int = 15) -> dict[str, list[float]]:
    train = [1.0 * 0.9**e + 0.05 for e in range(n)]
    val = [0.5 + 0.02 * abs(e - best) if e > best else 0.5 + 0.05 * (best - e) for e in range(n)]
    return {"train_loss": train, "val_loss": val}


def test_overfitting_when_val_loss_rises_while_train_loss_falls():
    spec = spec_of(epochs=40)
    verdict = only(assess(spec, series_of(epochs=overfit_epochs()), final=True), "overfitting")
    assert verdict.severity == "warning"
    assert verdict.pointer == "/model/dropout"
    assert verdict.evidence["epochs_since_best"] >= t.OVERFIT_EPOCHS
    assert verdict.evidence["rise"] > t.OVERFIT_RISE
    patched = applied(spec, verdict)
    assert patched["model"]["dropout"] == 0.5 and patched["regularization"]["l2"] == t.L2_FLOOR


def test_overfitting_is_live_once_it_has_lasted_and_not_before():
    spec = spec_of(epochs=40)
    points = run_points(epochs=overfit_epochs())
    assert "overfitting" not in codes(assess(spec, from_points(p for p in points if p[1] <= 18)))
    assert "overfitting" in codes(assess(spec, from_points(p for p in points if p[1] <= 30)))


def test_overfitting_on_a_widening_gap_with_a_flat_val_loss():
    train = [1.5 * 0.8**e for e in range(20)]
    val = [max(0.3, 1.0 - 0.1 * e) for e in range(20)]  # flat at 0.3 from epoch 8 on
    verdict = only(assess(spec_of(epochs=20), series_of(epochs={"train_loss": train, "val_loss": val})), "overfitting")
    assert verdict.evidence["rise"] < t.OVERFIT_RISE < t.OVERFIT_GAP_GROWTH <= verdict.evidence["gap_growth"]


def test_overfitting_with_early_stopping_is_info_and_a_cnn_gets_l2():
    stopping = {"early_stopping": {"monitor": "val_loss", "patience": 30}}
    verdict = only(
        assess(spec_of(epochs=40, regularization=stopping), series_of(epochs=overfit_epochs())), "overfitting"
    )
    assert verdict.severity == "info"
    cnn = spec_of(epochs=40, model={"type": "cnn", "layers": [{"type": "conv", "filters": 4, "kernel": 3}]})
    verdict = only(assess(cnn, series_of(epochs=overfit_epochs())), "overfitting")
    assert verdict.pointer == "/regularization/l2"
    assert applied(cnn, verdict)["regularization"]["l2"] == t.L2_FLOOR


def test_noisy_validation_that_keeps_improving_is_not_overfitting():
    val = [0.5 * 0.99**e * (1.15 if e % 3 == 0 else 1.0) for e in range(60)]
    train = [0.6 * 0.98**e for e in range(60)]
    found = assess(spec_of(epochs=60), series_of(epochs={"train_loss": train, "val_loss": val}), final=True)
    assert "overfitting" not in codes(found)


# --- underfitting --------------------------------------------------------------------------------------


def test_underfitting_only_at_the_end():
    spec = spec_of(epochs=5)
    losses = {"train_loss": [2.701, 2.063, 1.677, 1.399, 1.187]}  # sgd.json
    series = series_of(epochs=losses, init_loss=2.85)
    assert "underfitting" not in codes(assess(spec, series))
    verdict = only(assess(spec, series, final=True), "underfitting")
    assert verdict.pointer == "/epochs"
    assert applied(spec, verdict)["epochs"] == 10
    assert verdict.evidence["train_loss"] == 1.187


def test_an_underfit_plateau_widens_the_model():
    spec = spec_of(epochs=5)
    series = series_of(epochs={"train_loss": [2.0, 1.6, 1.45, 1.44, 1.44]}, init_loss=2.3)
    verdict = only(assess(spec, series, final=True), "underfitting")
    assert verdict.pointer == "/model/hidden"
    assert applied(spec, verdict)["model"]["hidden"] == [256, 128]


def test_underfitting_defers_to_its_cause_and_needs_ln_c():
    spec = spec_of(epochs=5)
    assert "underfitting" not in codes(assess(spec, series_of(epochs={"train_loss": SLOW}), final=True))
    regression = spec_of(epochs=5, task="regression", data={"source": {"type": "builtin", "name": "diabetes"}})
    assert assess(regression, series_of(epochs={"train_loss": [2.0, 1.2, 1.1]}), final=True) == []


# --- symmetric_units --------------------------------------------------------------------------------


def zero_init_every(measurements: int = 9) -> dict[str, list[float]]:
    every: dict[str, list[float]] = {}
    for weight in HIDDEN:
        every[f"grad_norm/{weight}"] = [0.0] * measurements
        every[f"update_ratio/{weight}"] = [0.0] * measurements
    for layer in ACTS:
        every[f"act/{layer}/mean"] = [0.0] * measurements
        every[f"act/{layer}/std"] = [0.0] * measurements
        every[f"act/{layer}/dead"] = [1.0] * measurements
    return every


def test_symmetric_units_with_zero_init():
    spec = spec_of(model={"init": {"type": "zeros"}})
    flat = {"train_loss": [2.304] * 10, "val_loss": [2.303] * 10}
    verdicts = assess(spec, series_of(epochs=flat, every=zero_init_every(), init_loss=2.3026), final=True)
    assert codes(verdicts) == ["symmetric_units"], "dead units, ln C at init and zero updates follow from it"
    verdict = verdicts[0]
    assert verdict.severity == "error"
    assert verdict.evidence["constant_layers"] == ACTS
    assert verdict.evidence["zero_gradient_weights"] == HIDDEN
    assert applied(spec, verdict)["model"]["init"]["type"] == "kaiming"


def test_symmetric_sigmoid_units_are_constant_only_at_init():
    spec = spec_of(model={"init": {"type": "zeros"}, "activation": {"type": "sigmoid"}})
    every = {"act/2_activation/mean": [0.5, 0.52, 0.55], "act/2_activation/std": [0.0, 0.1, 0.12]}
    verdict = only(assess(spec, series_of(every=every)), "symmetric_units")
    assert verdict.evidence["constant_layers"] == ["2_activation"]
    assert applied(spec, verdict)["model"]["init"]["type"] == "lecun_normal"


def test_constant_outputs_without_zero_init_are_dead_units_not_symmetry():
    spec = spec_of(model={"init": {"type": "normal", "mean": -0.5, "std": 0.01}})
    every = {"act/2_activation/std": [0.0] * 3, "act/2_activation/dead": [1.0] * 3}
    assert codes(assess(spec, series_of(every=every))) == ["dead_relus"]


# --- vanishing / exploding gradients ----------------------------------------------------------------


def deep_every(first: float, last: float, measurements: int = 9) -> dict[str, list[float]]:
    """Gradient norms falling geometrically from the last weight (index 21) to the first (index 1)."""
    every: dict[str, list[float]] = {}
    for i in range(11):
        norm = last * (first / last) ** ((10 - i) / 10)
        every[f"grad_norm/{2 * i + 1}_dense.weight"] = [norm] * measurements
    return every


def test_vanishing_gradients_in_a_deep_sigmoid_net():
    spec = spec_of(model={"activation": {"type": "sigmoid"}, "init": {"type": "xavier_normal"}, "hidden": [64] * 10})
    verdict = only(assess(spec, series_of(every=deep_every(1e-6, 0.49))), "vanishing_gradients")
    assert verdict.severity == "warning"
    assert verdict.evidence["gradient"]["ratio"] == pytest.approx(1e-6 / 0.49, rel=1e-3)
    assert verdict.evidence["gradient"]["first"] == "1_dense.weight"
    assert verdict.evidence["gradient"]["last"] == "21_dense.weight"
    assert verdict.pointer == "/model/activation"
    patched = applied(spec, verdict)
    assert patched["model"]["activation"]["type"] == "relu" and patched["model"]["init"]["type"] == "kaiming"
    assert "0.25" in verdict.message


def test_vanishing_when_activations_collapse_with_depth():
    spec = spec_of(model={"activation": {"type": "tanh"}, "init": {"type": "normal", "std": 0.01}})
    stds = [0.077, 0.012, 0.0019, 3e-4, 4.8e-5, 7.8e-6]  # tanh_init_small at init
    every = {f"act/{2 * i + 2}_activation/std": [std] * 5 for i, std in enumerate(stds)}
    every |= {f"grad_norm/{2 * i + 1}_dense.weight": [2.5e-5] * 5 for i in range(7)}  # tiny but even
    verdict = only(assess(spec, series_of(every=every)), "vanishing_gradients")
    assert "gradient" not in verdict.evidence
    assert verdict.evidence["activations"]["ratio"] == pytest.approx(7.8e-6 / 0.077, rel=1e-3)
    assert applied(spec, verdict)["model"]["init"] == {"type": "lecun_normal"}


def test_exploding_gradients():
    spec = spec_of(model={"activation": {"type": "tanh"}, "init": {"type": "normal", "std": 1.0}})
    verdict = only(assess(spec, series_of(every=deep_every(282.0, 2.35))), "exploding_gradients")
    assert verdict.severity == "warning"
    assert verdict.evidence["ratio"] == pytest.approx(282 / 2.35, rel=1e-3)
    assert verdict.pointer == "/model/init"
    assert applied(spec, verdict)["model"]["init"]["type"] == "lecun_normal"


def test_non_finite_gradients_are_an_error():
    every = healthy_every()
    every["grad_norm/1_dense.weight"][4] = float("inf")
    verdict = only(assess(spec_of(), series_of(every=every)), "exploding_gradients")
    assert verdict.severity == "error" and verdict.evidence["non_finite"] == {"1_dense.weight": "inf"}


@pytest.mark.parametrize("ratio", [0.07, 0.2, 1.0, 1.6])
def test_healthy_gradient_ratios(ratio):
    """Healthy runs measured first / last ratios of 0.07 (an embedding) to 1.6 (deep ReLU, Kaiming)."""
    found = codes(assess(spec_of(), series_of(every=deep_every(0.5 * ratio, 0.5))))
    assert "vanishing_gradients" not in found and "exploding_gradients" not in found


# --- saturated units, dead ReLUs ------------------------------------------------------------------


def test_saturated_units_with_a_large_init():
    spec = spec_of(model={"activation": {"type": "tanh"}, "init": {"type": "normal", "std": 1.0}})
    every = {f"act/{layer}/saturated": [0.77, 0.9, 0.96] for layer in ACTS}
    verdict = only(assess(spec, series_of(every=every)), "saturated_units")
    assert verdict.evidence["saturated_share"] == {layer: 0.9 for layer in ACTS}
    assert applied(spec, verdict)["model"]["init"]["type"] == "lecun_normal"


def test_saturated_units_with_a_scaled_init_switch_to_relu():
    spec = spec_of(model={"activation": {"type": "sigmoid"}, "init": {"type": "xavier_normal"}})
    every = {"act/2_activation/saturated": [0.6] * 3, "act/4_activation/saturated": [0.05] * 3}
    verdict = only(assess(spec, series_of(every=every)), "saturated_units")
    assert list(verdict.evidence["saturated_share"]) == ["2_activation"]
    assert applied(spec, verdict)["model"]["activation"]["type"] == "relu"


def test_dead_relus_that_died_while_training_lower_the_lr():
    spec = spec_of(optimizer={"lr": 2.0})
    every = healthy_every(measurements=5)
    every["act/4_activation/dead"] = [0.0, 0.94, 0.97, 0.97, 0.98]
    verdict = only(assess(spec, series_of(every=every)), "dead_relus")
    assert verdict.evidence["dead_share"] == {"4_activation": 0.97}
    assert verdict.evidence["dead_share_at_init"] == {"4_activation": 0.0}
    assert verdict.pointer == "/optimizer/lr" and applied(spec, verdict)["optimizer"]["lr"] == 0.2


def test_dead_relus_on_unscaled_inputs_standardize_them():
    spec = spec_of(data={"preprocess": []})
    every = {"act/1_activation/std": [92.0, 0.0, 0.0], "act/1_activation/dead": [0.625, 1.0, 1.0]}
    verdict = only(assess(spec, series_of(every=every)), "dead_relus")
    assert verdict.pointer == "/data/preprocess"
    assert applied(spec, verdict)["data"]["preprocess"] == [{"type": "standardize"}]


def test_dead_relus_from_init_change_the_init_then_the_activation():
    every = {"act/2_activation/dead": [0.9] * 3}
    normal = spec_of(model={"init": {"type": "normal", "std": 0.01}})
    assert applied(normal, only(assess(normal, series_of(every=every)), "dead_relus"))["model"]["init"]["type"] == (
        "kaiming"
    )
    kaiming = spec_of()
    verdict = only(assess(kaiming, series_of(every=every)), "dead_relus")
    assert applied(kaiming, verdict)["model"]["activation"]["type"] == "leaky_relu"


def test_a_few_dead_units_are_fine():
    every = {"act/2_activation/dead": [0.2] * 5, "act/4_activation/dead": [0.0, 0.1, 0.4, 0.45, 0.3]}
    assert "dead_relus" not in codes(assess(spec_of(), series_of(every=every)))


# --- init_loss_off -------------------------------------------------------------------------------------


def test_init_loss_far_above_ln_c():
    spec = spec_of(model={"activation": {"type": "tanh"}, "init": {"type": "normal", "std": 1.0}})
    verdict = only(assess(spec, series_of(init_loss=24.3)), "init_loss_off")
    assert verdict.severity == "warning"
    assert verdict.evidence == {"init_loss": 24.3, "expected": 2.303, "factor": 10.55}
    assert applied(spec, verdict)["model"]["init"]["type"] == "lecun_normal"


def test_init_loss_far_below_ln_c_is_info_and_near_it_is_nothing():
    assert only(assess(spec_of(), series_of(init_loss=0.5)), "init_loss_off").severity == "info"
    for loss in (2.3, 2.85, 3.25):  # Kaiming ReLU nets start a little high
        assert assess(spec_of(), series_of(init_loss=loss)) == []
    assert assess(spec_of(), series_of(init_loss=24.3, expected=None)) == [], "regression: no ln C"


# --- update_ratio_off ------------------------------------------------------------------------------


def ratio_every(ratios: list[float], measurements: int = 5) -> dict[str, list[float]]:
    return {f"update_ratio/{w}": [r] * measurements for w, r in zip(HIDDEN, ratios, strict=True)}


def test_update_ratios_too_large():
    spec = spec_of(optimizer={"lr": 0.5})
    verdict = only(assess(spec, series_of(every=ratio_every([0.0155, 0.0171, 0.0311]))), "update_ratio_off")
    assert verdict.severity == "info"
    assert verdict.evidence["high"] == sorted(HIDDEN)
    assert applied(spec, verdict)["optimizer"]["lr"] == 0.05


def test_update_ratios_far_too_small_are_a_warning():
    verdict = only(assess(spec_of(), series_of(every=ratio_every([1e-6, 9e-7, 1.2e-6]))), "update_ratio_off")
    assert verdict.severity == "warning"
    assert verdict.evidence["low"] == sorted(HIDDEN)
    assert applied(spec_of(), verdict)["optimizer"]["lr"] == 0.5


def test_update_ratio_off_leaves_a_gradient_flow_problem_to_its_verdict():
    spec = spec_of(model={"activation": {"type": "sigmoid"}, "init": {"type": "xavier_normal"}, "hidden": [64] * 10})
    every = deep_every(1e-6, 0.49) | {f"update_ratio/{2 * i + 1}_dense.weight": [1e-8] * 9 for i in range(11)}
    verdict = only(assess(spec, series_of(every=every)), "update_ratio_off")
    assert verdict.suggestion == []


def test_update_ratios_near_1e_3_or_too_few_are_nothing():
    assert assess(spec_of(), series_of(every=ratio_every([7e-4, 1e-3, 2.1e-3]))) == []
    assert assess(spec_of(), series_of(every=ratio_every([1e-2, 3e-2, 1e-1], measurements=2))) == []
