"""Verdicts: what a run's curves and diagnostics say, in the course notes' terms, with the spec
field to change and a JSON Patch to try. ``assess`` is a pure function of the spec, the series
recorded so far and the failure reason; live (``final=False``, at each epoch end) it says only
what the epochs so far already show, at the end (``final=True``) also what needs the whole run.
A rule fires only on the series it rests on (no diagnostics, no gradient verdicts). Thresholds
and the reasons for them: ``core.insight.thresholds``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from core.insight import suggestions as s
from core.insight import thresholds as t
from core.insight.series import Points, RunSeries, layer_of, median, per_layer, trailing_mean

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.spec.schema import ExperimentSpec

Severity = Literal["info", "warning", "error"]
SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Verdict:
    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any]
    pointer: str | None
    suggestion: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "evidence": self.evidence,
            "pointer": self.pointer,
            "suggestion": self.suggestion,
        }


def num(value: float) -> float | str:
    """A number for evidence: four significant digits; 'nan' / 'inf' / '-inf' as strings (JSON has none)."""
    return float(f"{value:.4g}") if math.isfinite(value) else str(value)


def _g(value: float) -> str:
    return f"{value:.3g}"


@dataclass
class _Run:
    """What the rules read: the resolved spec document, the series, and the verdicts found so far."""

    document: dict[str, Any]
    series: RunSeries
    failure: str | None
    final: bool
    found: dict[str, Verdict] = field(default_factory=dict)

    def epochs(self, name: str) -> list[tuple[int, float]]:
        points = self.series.get(name)
        return points.per_epoch() if points else []

    def first(self, name: str) -> float | None:
        points = self.series.get(name)
        return points.value[0] if points else None

    def has(self, *codes: str) -> bool:
        return any(code in self.found for code in codes)


def _by_step(points: Points) -> dict[int, float]:
    return dict(zip(points.step, points.value, strict=True))


def _ratios(upper: Points, lower: Points) -> list[float]:
    """upper / lower at each step both were measured (where lower > 0)."""
    below = _by_step(lower)
    return [u / below[step] for step, u in zip(upper.step, upper.value, strict=True) if below.get(step, 0) > 0]


def _unscaled_inputs(run: _Run) -> bool:
    """Nothing scales the inputs and the first activation layer is already blown up at initialisation
    (std far above a unit scale, or saturated)."""
    if s.has_scaling(run.document):
        return False
    std = per_layer(run.series, "act/", "/std")
    saturated = per_layer(run.series, "act/", "/saturated")
    big = bool(std) and run.series[std[0]].value[0] > t.UNSCALED_STD
    pinned = bool(saturated) and run.series[saturated[0]].value[0] >= t.SATURATED_SHARE
    return big or pinned


def _dead_layers(run: _Run) -> dict[str, tuple[float, float]]:
    """ReLU layers whose recent dead share reaches ``DEAD_SHARE``: layer → (share at the first
    measurement, recent share)."""
    dead = {}
    for name in per_layer(run.series, "act/", "/dead"):
        values = run.series[name].value
        recent = median(values[-t.DEAD_RECENT :])
        if recent >= t.DEAD_SHARE:
            dead[layer_of(name)] = (values[0], recent)
    return dead


def _median_update_ratio(run: _Run) -> float | None:
    """The median weight's median update / weight ratio (None without the series)."""
    ratio = median(median(run.series[name].after_start()) for name in per_layer(run.series, "update_ratio/"))
    return None if math.isnan(ratio) else ratio


def _gradient_span(run: _Run) -> dict[str, Any] | None:
    """The first and the last weight's gradient norms (medians) and the median of their ratio at
    each measurement; None with fewer than two weights or no ratio."""
    grads = per_layer(run.series, "grad_norm/")
    if len(grads) < 2:
        return None
    first, last = run.series[grads[0]], run.series[grads[-1]]
    ratio = median(_ratios(first, last))
    if math.isnan(ratio):
        return None
    return {
        "first": layer_of(grads[0]),
        "last": layer_of(grads[-1]),
        "first_norm": median(first.value),
        "last_norm": median(last.value),
        "ratio": ratio,
    }


def _span_text(span: dict[str, Any], relation: str) -> str:
    return (
        f"the first layer's gradient norm ({_g(span['first_norm'])}, {span['first']}) is {_g(span['ratio'])}"
        f"{relation} the last layer's ({_g(span['last_norm'])}, {span['last']})"
    )


def _with_pointer(ops: list[dict[str, Any]], fallback: str) -> str:
    return ops[0]["path"].removesuffix("/-") if ops else fallback


# --- the rules, in the order they run (a later rule may defer to an earlier one's verdict) -------


def _lr_too_high(run: _Run) -> Verdict | None:
    doc = run.document
    pointer = s.lr_pointer(doc)
    lr = s.value_at(doc, pointer)
    non_finite = {}
    for name in ("train_loss_running", "train_loss", "val_loss"):
        points = run.series.get(name, Points())
        bad = [(step, value) for step, value in zip(points.step, points.value, strict=True) if not math.isfinite(value)]
        if bad:
            non_finite[name] = {"step": bad[0][0], "value": num(bad[0][1])}
    diverged = run.failure is not None and "diverged" in run.failure
    if diverged or non_finite:
        evidence: dict[str, Any] = {"lr": lr, "non_finite": non_finite}
        if diverged:
            evidence["failure"] = run.failure
        if run.failure and "/data/target_preprocess" in run.failure:
            ops = s.append(doc, "/data/target_preprocess", {"type": "standardize"})
            return Verdict(
                "lr_too_high",
                "error",
                f"The run failed: {run.failure}. Steps that suit unit-scale targets are far too large "
                "for these: standardize the targets (or lower the learning rate).",
                evidence,
                "/data/target_preprocess",
                ops,
            )
        where = ", ".join(f"{name} became {v['value']} at step {v['step']}" for name, v in non_finite.items())
        ops = s.scale_lr(doc, 1 / t.LR_STEP)
        return Verdict(
            "lr_too_high",
            "error",
            f"The loss diverged ({where or run.failure}) with lr {lr}: the steps are so large that "
            "the loss grows instead of converging (notes 000). Lower the learning rate tenfold.",
            evidence,
            pointer,
            ops,
        )
    losses = run.epochs("train_loss")[: t.EARLY_EPOCHS]
    blown = _blown_up(run, losses)
    if blown is not None:
        return blown
    needed = min(t.EARLY_EPOCHS, s.value_at(doc, "/epochs", t.EARLY_EPOCHS))
    if len(losses) < 2 or (not run.final and len(losses) < needed):
        return None  # live: one bumpy epoch is not yet a verdict, the whole early window is
    rises = [
        (epoch, before, after)
        for (_, before), (epoch, after) in pairwise(losses)
        if after > before * (1 + t.LR_HIGH_RISE)
    ]
    first, last = losses[0][1], losses[-1][1]
    progress = last / first if first > 0 else math.inf
    if not rises or progress < t.LR_HIGH_NO_PROGRESS:
        return None
    epoch, before, after = rises[0]
    shape = "oscillates" if len(rises) > 1 else "rises"
    evidence = {
        "lr": lr,
        "epochs": [e for e, _ in losses],
        "train_loss": [num(v) for _, v in losses],
        "rises": [{"epoch": e, "from": num(b), "to": num(a)} for e, b, a in rises],
        "end_over_start": num(progress),
    }
    return _lr_warning(
        run,
        f"The training loss {shape} early: {_g(before)} → {_g(after)} at epoch {epoch}, and after "
        f"{len(losses)} epochs it is still {progress:.0%} of epoch {losses[0][0]}'s ({_g(last)} vs {_g(first)}). "
        f"With lr {lr} the steps jump across the minimum instead of descending into it (notes 000: "
        "too large a learning rate makes the loss grow or leaves it unstable).",
        evidence,
    )


def _lr_warning(run: _Run, message: str, evidence: dict[str, Any]) -> Verdict:
    """An lr_too_high warning: the median update ratio joins its evidence (when measured), and it
    suggests a tenth of the learning rate."""
    ratio = _median_update_ratio(run)
    if ratio is not None:
        evidence["update_ratio_median"] = num(ratio)
    doc = run.document
    return Verdict(
        "lr_too_high",
        "warning",
        f"{message} Try a tenth of it and compare the curves.",
        evidence,
        s.lr_pointer(doc),
        s.scale_lr(doc, 1 / t.LR_STEP),
    )


def _start_loss(run: _Run) -> float | None:
    """The loss a run started at: the larger of the loss measured before any update and ln C."""
    known = [v for v in (run.first("init_loss"), run.first("init_loss_expected")) if v is not None and math.isfinite(v)]
    return max(known) if known else None


def _blown_up(run: _Run, losses: list[tuple[int, float]]) -> Verdict | None:
    """lr_too_high when an early epoch's mean training loss is ``LR_HIGH_BLOWUP`` times the loss the
    run started at or more (certain as soon as that epoch is seen), unless the run has recovered
    since (``LR_HIGH_RECOVERED``)."""
    start = _start_loss(run)
    if not start:
        return None
    blown = [(epoch, loss) for epoch, loss in losses if loss >= t.LR_HIGH_BLOWUP * start]
    latest = run.epochs("train_loss")[-1][1] if blown else math.nan
    if not blown or latest < t.LR_HIGH_RECOVERED * start:
        return None
    lr = s.value_at(run.document, s.lr_pointer(run.document))
    epoch, loss = max(blown, key=lambda item: item[1])
    evidence: dict[str, Any] = {
        "lr": lr,
        "start_loss": num(start),
        "epoch": epoch,
        "train_loss": num(loss),
        "factor": num(loss / start),
    }
    return _lr_warning(
        run,
        f"The training loss blew up: epoch {epoch}'s mean was {_g(loss)}, {loss / start:.3g}× the {_g(start)} "
        f"the run started at. With lr {lr} the steps overshoot so far that the model gets worse than it "
        "was untrained (notes 000: too large a learning rate makes the loss grow).",
        evidence,
    )


def _symmetric_units(run: _Run) -> Verdict | None:
    doc = run.document
    if s.init_type(doc) != "zeros":
        return None
    constant = []
    for name in per_layer(run.series, "act/", "/std"):
        std = run.series[name].value[0]
        mean_name = name.removesuffix("/std") + "/mean"
        mean = run.series[mean_name].value[0] if mean_name in run.series else 0.0
        if std <= t.CONSTANT_STD * max(1.0, abs(mean)):
            constant.append(layer_of(name))
    zero = [layer_of(n) for n in per_layer(run.series, "grad_norm/") if max(run.series[n].value, default=1.0) == 0.0]
    if not constant and not zero:
        return None
    told = []
    if constant:
        verb = "outputs" if len(constant) == 1 else "output"
        told.append(f"{', '.join(constant)} {verb} one constant at initialisation (std 0)")
    if zero:
        told.append(f"the gradient of {', '.join(zero)} is 0 at every measurement")
    ops = s.fix_init(doc)
    return Verdict(
        "symmetric_units",
        "error",
        f"All-zero init: {'; '.join(told)}. Every unit of a layer computes the same value and gets "
        "the same gradient, so the symmetry never breaks and the units never become different (notes "
        f"004). Initialise the weights randomly: {ops[0]['value']['type'] if ops else 'a random init'}.",
        {"init": "zeros", "constant_layers": constant, "zero_gradient_weights": zero},
        "/model/init",
        ops,
    )


def _vanishing_gradients(run: _Run) -> Verdict | None:
    if run.has("symmetric_units"):
        return None
    doc, series = run.document, run.series
    evidence: dict[str, Any] = {}
    told = []
    span = _gradient_span(run)
    if span is not None and span["ratio"] < t.VANISHING_RATIO:
        evidence["gradient"] = {key: num(value) if isinstance(value, float) else value for key, value in span.items()}
        told.append(_span_text(span, " of"))
    stds = per_layer(series, "act/", "/std")
    if len(stds) >= 2 and not _dead_layers(run):
        first, last = stds[0], stds[-1]
        collapse = median(_ratios(series[last], series[first]))
        if collapse < t.COLLAPSE_RATIO:
            evidence["activations"] = {
                "first": layer_of(first),
                "last": layer_of(last),
                "first_std_at_init": num(series[first].value[0]),
                "last_std_at_init": num(series[last].value[0]),
                "ratio": num(collapse),
            }
            told.append(
                f"the activations collapse towards 0 with depth: std {_g(series[first].value[0])} in "
                f"{layer_of(first)}, {_g(series[last].value[0])} in {layer_of(last)} at initialisation"
            )
    if not evidence:
        return None
    saturating = s.activation(doc) in s.SATURATING
    if saturating and ("gradient" in evidence or s.init_type(doc) in s.SCALED_INITS):
        ops = s.relu_kaiming(doc)
        advice = "Use ReLU with Kaiming init, whose local gradient is 1 wherever a unit is active (notes 003, 004)."
    else:
        ops = s.fix_init(doc)
        advice = f"Scale the init to the layers' fan-in: {ops[0]['value']['type']} (notes 004)." if ops else ""
    if "gradient" in evidence and s.activation(doc) == "sigmoid":
        why = "Each sigmoid multiplies the gradient by at most 0.25 on its way back"
    elif "gradient" in evidence:
        why = "The gradient shrinks layer by layer on its way back"
    else:
        why = "A weight's local gradient is its layer's input, and those inputs go to 0"
    return Verdict(
        "vanishing_gradients",
        "warning",
        f"Vanishing gradients: {'; and '.join(told)}. {why}, so the first layers barely learn "
        f"(notes 002, 003, 004). {advice}".strip(),
        evidence,
        _with_pointer(ops, "/model/init"),
        ops,
    )


def _exploding_gradients(run: _Run) -> Verdict | None:
    doc, series = run.document, run.series
    bad = {
        layer_of(name): num(value)
        for name in per_layer(series, "grad_norm/")
        for value in series[name].value
        if not math.isfinite(value)
    }
    span = _gradient_span(run)
    exploding = span is not None and span["ratio"] > t.EXPLODING_RATIO
    if not bad and not exploding:
        return None
    if _unscaled_inputs(run):
        ops = s.standardize_inputs(doc)
    else:
        ops = s.fix_init(doc) or s.replace(doc, "/model/batch_norm", True) or s.scale_lr(doc, 1 / t.LR_STEP)
    told = [_span_text(span, "×")] if exploding else []
    if bad:
        told.append(f"gradient norms became non-finite in {', '.join(bad)}")
    evidence: dict[str, Any] = {"non_finite": bad}
    if span is not None:
        evidence |= {key: num(value) if isinstance(value, float) else value for key, value in span.items()}
    return Verdict(
        "exploding_gradients",
        "error" if bad else "warning",
        f"Exploding gradients: {'; '.join(told)}. The gradient grows on its way back through the layers, "
        "so the first layers take huge, unstable steps (notes 000, 004: large initial weights make "
        "gradients explode with depth).",
        evidence,
        _with_pointer(ops, "/model/init"),
        ops,
    )


def _saturated_units(run: _Run) -> Verdict | None:
    doc, series = run.document, run.series
    shares = {layer_of(n): median(series[n].value) for n in per_layer(series, "act/", "/saturated")}
    flagged = {layer: share for layer, share in shares.items() if share >= t.SATURATED_SHARE}
    if not flagged:
        return None
    if _unscaled_inputs(run):
        ops, advice = s.standardize_inputs(doc), "Standardize the inputs (notes 000)."
    elif s.init_type(doc) not in s.SCALED_INITS:
        ops = s.fix_init(doc)
        advice = f"Scale the init to the layers' fan-in: {ops[0]['value']['type']}, std 1/√fan_in (notes 004)."
    else:
        ops, advice = s.relu_kaiming(doc), "Use ReLU with Kaiming init, which does not saturate (notes 003)."
    listed = ", ".join(f"{share:.0%} of {layer}'s" for layer, share in flagged.items())
    return Verdict(
        "saturated_units",
        "warning",
        f"Saturated units: {listed} outputs sit within 2% of the activation's asymptotes, "
        "where its local gradient is almost 0, so these units pass back almost no gradient and "
        f"stop learning (notes 002: saturated neurons kill the gradient). {advice}",
        {"saturated_share": {layer: num(share) for layer, share in flagged.items()}, "threshold": t.SATURATED_SHARE},
        _with_pointer(ops, "/model/init"),
        ops,
    )


def _dead_relus(run: _Run) -> Verdict | None:
    if run.has("symmetric_units"):
        return None  # a zero-initialised layer outputs 0 everywhere: the symmetry, not dying, is why
    doc = run.document
    dead = _dead_layers(run)
    if not dead:
        return None
    died = [layer for layer, (at_init, _) in dead.items() if at_init < t.DEAD_SHARE]
    if _unscaled_inputs(run):
        ops = s.standardize_inputs(doc)
        advice = "The inputs are unscaled, so the first pre-activations are huge: standardize them (notes 000, 004)."
    elif died:
        ops = s.scale_lr(doc, 1 / t.LR_STEP)
        advice = (
            f"They were alive at initialisation ({', '.join(died)}) and died while training: a step "
            "too large pushes a unit's weights to where it is never active again. Lower the learning rate."
        )
    else:
        ops = s.fix_init(doc) or s.replace(doc, "/model/activation", {"type": "leaky_relu"})
        advice = "They are dead from initialisation: " + (
            f"use {ops[0]['value']['type']}." if ops else "change the init or the activation."
        )
    listed = ", ".join(f"{recent:.0%} of {layer}'s" for layer, (_, recent) in dead.items())
    return Verdict(
        "dead_relus",
        "warning",
        f"Dead ReLUs: {listed} units output 0 for every sample of the batch; a dead unit's "
        f"gradient is 0, so it never recovers (notes 002, 003: dying ReLU). {advice}",
        {
            "dead_share": {layer: num(recent) for layer, (_, recent) in dead.items()},
            "dead_share_at_init": {layer: num(at_init) for layer, (at_init, _) in dead.items()},
            "threshold": t.DEAD_SHARE,
        },
        _with_pointer(ops, "/model/activation"),
        ops,
    )


def _init_loss_off(run: _Run) -> Verdict | None:
    if run.has("symmetric_units"):
        return None
    loss, expected = run.first("init_loss"), run.first("init_loss_expected")
    if loss is None or expected is None or expected <= 0:
        return None
    factor = loss / expected if math.isfinite(loss) else math.inf
    if 1 / t.INIT_LOSS_FACTOR <= factor <= t.INIT_LOSS_FACTOR:
        return None
    doc = run.document
    evidence = {"init_loss": num(loss), "expected": num(expected), "factor": num(factor)}
    if factor < 1:
        return Verdict(
            "init_loss_off",
            "info",
            f"The loss before any training is {_g(loss)}, well under ln C = {_g(expected)}: a randomly "
            "initialised classifier cannot be confident and right yet. Check that the labels do not "
            "leak into the inputs.",
            evidence,
            None,
            [],
        )
    unscaled = _unscaled_inputs(run)
    ops = s.standardize_inputs(doc) if unscaled else s.fix_init(doc)
    cause = "the inputs are unscaled (notes 000)" if unscaled else "the initial weights are too large (notes 004)"
    return Verdict(
        "init_loss_off",
        "warning",
        f"The loss at initialisation is {_g(loss)}, {factor:.3g}× ln C = {_g(expected)} (what a uniform "
        "guess over the classes costs, and where a well-initialised classifier starts): the initial "
        f"logits are large and confidently wrong, so the first steps only undo the start; {cause}."
        + (f" Try {ops[0]['value']['type']}." if ops else ""),
        evidence,
        _with_pointer(ops, "/model/init"),
        ops,
    )


def _lr_too_low(run: _Run) -> Verdict | None:
    if run.has("lr_too_high", "symmetric_units"):
        return None
    doc = run.document
    losses = [value for _, value in run.epochs("train_loss")]
    points = run.series.get("train_loss")
    if len(losses) < t.MIN_TREND_EPOCHS or points is None or points.step[-1] < t.LR_LOW_MIN_STEPS:
        return None
    init = run.first("init_loss")
    start = max(losses[0], init) if init is not None and math.isfinite(init) else losses[0]
    fall = (start - losses[-1]) / start if start > 0 else 0.0
    if not t.LR_LOW_MIN_FALL <= fall < t.LR_LOW_FALL:
        return None
    n = len(losses)
    middle = (n - 1) // 2
    early_rate = (losses[0] - losses[middle]) / middle
    late_rate = (losses[middle] - losses[-1]) / (n - 1 - middle)
    if early_rate <= 0 or late_rate / early_rate < t.LR_LOW_LINEARITY:
        return None
    ratio = _median_update_ratio(run)
    if ratio is not None and ratio >= t.LR_LOW_UPDATE_RATIO:
        return None  # the steps are not small: the slow fall has another cause
    pointer = s.lr_pointer(doc)
    lr = s.value_at(doc, pointer)
    evidence = {
        "lr": lr,
        "train_loss": [num(v) for v in losses],
        "start": num(start),
        "fall": num(fall),
        "linearity": num(late_rate / early_rate),
    }
    steps = ""
    if ratio is not None:
        evidence["update_ratio_median"] = num(ratio)
        steps = f", and each step moves the weights by {_g(ratio)} of their norm (≪ the 1e-3 rule of thumb)"
    return Verdict(
        "lr_too_low",
        "warning",
        f"The training loss falls slowly and almost linearly: {_g(start)} → {_g(losses[-1])} "
        f"({fall:.0%}) in {n} epochs, the later epochs falling at {late_rate / early_rate:.0%} of the "
        f"earlier ones' rate{steps}. With lr {lr} it converges, but very slowly (notes 000). Try ten "
        "times the learning rate and compare the curves.",
        evidence,
        pointer,
        s.scale_lr(doc, t.LR_STEP),
    )


def _update_ratio_off(run: _Run) -> Verdict | None:
    if run.has("symmetric_units"):
        return None
    measured = {layer_of(n): run.series[n].after_start() for n in per_layer(run.series, "update_ratio/")}
    ratios = {w: median(values) for w, values in measured.items() if len(values) >= t.UPDATE_RATIO_MIN_MEASUREMENTS}
    ratios = {weight: r for weight, r in ratios.items() if not math.isnan(r)}
    low = {w: r for w, r in ratios.items() if r < t.UPDATE_RATIO_TARGET / t.UPDATE_RATIO_BAND}
    high = {w: r for w, r in ratios.items() if r > t.UPDATE_RATIO_TARGET * t.UPDATE_RATIO_BAND}
    if not low and not high:
        return None
    worst = max(
        [t.UPDATE_RATIO_TARGET / r if r > 0 else math.inf for r in low.values()]
        + [r / t.UPDATE_RATIO_TARGET for r in high.values()]
    )
    doc = run.document
    overall = median(ratios.values())
    ops: list[dict[str, Any]] = []
    if not run.has("vanishing_gradients", "exploding_gradients", "saturated_units"):
        if high and not low and overall > t.UPDATE_RATIO_TARGET * t.UPDATE_RATIO_BAND:
            ops = s.scale_lr(doc, 1 / t.LR_STEP)
        elif low and not high and overall < t.UPDATE_RATIO_TARGET / t.UPDATE_RATIO_BAND:
            ops = s.scale_lr(doc, t.LR_STEP)
    parts = []
    if low:
        parts.append("too small in " + ", ".join(f"{w} ({_g(r)})" for w, r in low.items()))
    if high:
        parts.append("too large in " + ", ".join(f"{w} ({_g(r)})" for w, r in high.items()))
    if ops:
        parts.append("change the learning rate by a decade")
    elif run.has("vanishing_gradients", "exploding_gradients", "saturated_units"):
        parts.append("the spread between layers is a gradient-flow problem, which the other verdicts name")
    return Verdict(
        "update_ratio_off",
        "warning" if worst >= t.UPDATE_RATIO_FAR else "info",
        f"Update / weight ratios are off the ≈1e-3 rule of thumb (median per step): {'; '.join(parts)}.",
        {
            "update_ratio": {w: num(r) for w, r in ratios.items()},
            "low": sorted(low),
            "high": sorted(high),
            "target": t.UPDATE_RATIO_TARGET,
        },
        s.lr_pointer(doc),
        ops,
    )


def _overfitting(run: _Run) -> Verdict | None:
    if "lr_too_high" in run.found:  # a bouncing loss is no sign of memorising: name the one cause
        return None
    doc = run.document
    val, train = dict(run.epochs("val_loss")), dict(run.epochs("train_loss"))
    epochs = [e for e in val if e in train and math.isfinite(val[e]) and math.isfinite(train[e])]
    if not epochs:
        return None
    planned = s.value_at(doc, "/epochs", 1)
    window = min(max(planned // t.OVERFIT_SCALE, 1), t.OVERFIT_MAX_WINDOW)
    patience = max(t.OVERFIT_EPOCHS, planned // t.OVERFIT_SCALE)
    sv = trailing_mean([val[e] for e in epochs], window)
    st = trailing_mean([train[e] for e in epochs], window)
    best = min(range(len(sv)), key=sv.__getitem__)
    since = len(sv) - 1 - best
    if since < patience or sv[best] <= 0 or not st[-1] < st[best]:
        return None
    chance = run.first("init_loss_expected")
    if chance is not None and st[-1] >= t.OVERFIT_TRAIN_FIT * chance:
        return None  # nothing was memorised: the training loss is near chance too
    rise = (sv[-1] - sv[best]) / sv[best]
    growth = ((sv[-1] - st[-1]) - (sv[best] - st[best])) / sv[best]
    if rise < t.OVERFIT_RISE and growth < t.OVERFIT_GAP_GROWTH:
        return None
    stopping = s.value_at(doc, "/regularization/early_stopping")
    kept = isinstance(stopping, dict) and stopping.get("restore_best") and stopping.get("monitor") == "val_loss"
    ops = s.regularize(doc)
    smoothed = f" (averaged over {window} epochs)" if window > 1 else ""
    changes = ", ".join(f"{op['path'].rsplit('/', 1)[-1]} {op['value']}" for op in ops)
    return Verdict(
        "overfitting",
        "info" if kept else "warning",
        f"Overfitting: val_loss{smoothed} was lowest at epoch {epochs[best]} ({_g(sv[best])}) and is "
        f"{_g(sv[-1])} {since} epochs later ({rise:+.0%}), while train_loss fell from {_g(st[best])} to "
        f"{_g(st[-1])}: the gap widened from {_g(sv[best] - st[best])} to {_g(sv[-1] - st[-1])}. The model "
        "is learning the training set's noise (notes 001: 과적합). "
        + ("Early stopping keeps the best epoch's weights. " if kept else "")
        + (f"Regularize: {changes} (notes 002, 004)." if ops else "Regularize it or use more data."),
        {
            "best_epoch": epochs[best],
            "best_val_loss": num(sv[best]),
            "val_loss": num(sv[-1]),
            "train_loss_at_best": num(st[best]),
            "train_loss": num(st[-1]),
            "epochs_since_best": since,
            "rise": num(rise),
            "gap_growth": num(growth),
            "smoothing_epochs": window,
        },
        _with_pointer(ops, "/regularization/l2"),
        ops,
    )


CAUSES = (
    "lr_too_high",
    "lr_too_low",
    "symmetric_units",
    "vanishing_gradients",
    "exploding_gradients",
    "saturated_units",
    "dead_relus",
)


def _underfitting(run: _Run) -> Verdict | None:
    if not run.final or run.has(*CAUSES):
        return None  # live the run may still get there; a named cause explains a high loss better
    doc = run.document
    expected = run.first("init_loss_expected")
    if expected is None and doc.get("task") == "binary":
        expected = math.log(2.0)
    losses = run.epochs("train_loss")
    if expected is None or len(losses) < 2 or not math.isfinite(losses[-1][1]):
        return None
    last, before = losses[-1][1], losses[-2][1]
    if last < t.UNDERFIT_LOSS * expected:
        return None
    falling = before > 0 and (before - last) / before >= t.STILL_FALLING
    if falling:
        epochs = s.value_at(doc, "/epochs")
        ops = s.replace(doc, "/epochs", min(2 * epochs, 100_000))
        advice = f"It is still falling ({(before - last) / before:.0%} in the last epoch): train longer."
    else:
        hidden = s.value_at(doc, "/model/hidden")
        ops = s.replace(doc, "/model/hidden", [2 * units for units in hidden]) if isinstance(hidden, list) else []
        advice = "It has stopped falling: the model is too small for the task" + (", widen it." if ops else ".")
    return Verdict(
        "underfitting",
        "warning",
        f"Underfitting: the training loss ends at {_g(last)}, {last / expected:.0%} of ln C = {_g(expected)} "
        f"(the loss of knowing nothing), after {losses[-1][0]} epochs. {advice}",
        {"train_loss": num(last), "ln_c": num(expected), "last_epoch_fall": num((before - last) / before)},
        _with_pointer(ops, "/model"),
        ops,
    )


RULES: tuple[Callable[[_Run], Verdict | None], ...] = (
    _lr_too_high,
    _symmetric_units,
    _vanishing_gradients,
    _exploding_gradients,
    _saturated_units,
    _dead_relus,
    _init_loss_off,
    _lr_too_low,
    _update_ratio_off,
    _overfitting,
    _underfitting,
)


def assess(
    spec: ExperimentSpec, series: RunSeries, *, failure: str | None = None, final: bool = False
) -> list[Verdict]:
    """The verdicts on a run so far (``final``: at its end), most severe first. ``failure`` is the
    run's failure reason, if it failed."""
    measured = {name: points for name, points in series.items() if len(points)}
    run = _Run(spec.model_dump(mode="json"), measured, failure, final)
    for rule in RULES:
        verdict = rule(run)
        if verdict is not None:
            run.found[verdict.code] = verdict
    order = list(run.found)
    return sorted(run.found.values(), key=lambda v: (SEVERITY_RANK[v.severity], order.index(v.code)))
