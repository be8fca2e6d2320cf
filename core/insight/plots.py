"""A run's plots as PNG bytes (matplotlib's Agg renderer through ``Figure``, no pyplot state):
learning curves, per-layer health, and a sweep's trials overlaid. A panel without data says so."""

import io
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from core.insight.downsample import kept_indices
from core.insight.series import Points, RunSeries, per_layer

LINE_POINTS = 2000  # per line: more than a panel is wide in pixels; min/max keeps the spikes
DECADES_FOR_LOG = 2  # a loss spanning more than 100× reads better on a log axis
UPDATE_RATIO_GUIDE = 1e-3  # the rule of thumb for update/weight ratios
_RENDER = threading.Lock()  # matplotlib is not thread-safe (its font cache); the API renders in threads


def curves_png(series: RunSeries, title: str) -> bytes:
    return _png(curves_figure(series, title))


def health_png(series: RunSeries, title: str = "") -> bytes:
    return _png(health_figure(series, title))


def sweep_curves_png(children: Sequence[tuple[str, RunSeries]], metric: str, title: str = "") -> bytes:
    return _png(sweep_figure(children, metric, title))


def curves_figure(series: RunSeries, title: str) -> Figure:
    """Train/val loss, train/val accuracy and the learning rate per epoch (test values as stars)."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    loss, accuracy, lr = figure.subplots(1, 3)
    for ax, kind in ((loss, "loss"), (accuracy, "accuracy")):
        drawn = [_line(ax, series.get(f"{split}_{kind}"), x="epoch", label=split) for split in ("train", "val")]
        drawn.append(_marker(ax, series.get(f"test_{kind}"), label="test"))
        _finish(ax, kind, "epoch", any(drawn), f"no {kind} recorded")
    _log_if_wide(loss)
    _finish(lr, "learning rate", "epoch", _line(lr, series.get("lr"), x="epoch", label=None), "no lr recorded")
    _log_if_wide(lr)
    figure.suptitle(title)
    return figure


def health_figure(series: RunSeries, title: str = "") -> Figure:
    """Per layer: activation std, dead (solid) and saturated (dashed) share; per weight: gradient
    norm and update/weight ratio on log axes, the ratio against its 1e-3 guide."""
    figure = Figure(figsize=(13, 8), layout="constrained")
    (std, share), (grad, ratio) = figure.subplots(2, 2)
    measured = _family(std, series, "act/", "/std")
    _finish(std, "activation std", "step", measured, "no activation statistics")
    dead = _family(share, series, "act/", "/dead", suffix=" dead")
    saturated = _family(share, series, "act/", "/saturated", suffix=" saturated", linestyle="--")
    if dead or saturated:
        share.set_ylim(-0.02, 1.02)
    empty = "no rectifier or bounded activation" if measured else "no activation statistics"
    _finish(share, "dead / saturated share", "step", dead or saturated, empty)
    _finish(grad, "gradient norm", "step", _family(grad, series, "grad_norm/"), "no gradient norms recorded")
    _log_if_positive(grad)
    drawn = _family(ratio, series, "update_ratio/")
    if drawn:
        ratio.axhline(UPDATE_RATIO_GUIDE, color="black", linestyle="--", linewidth=1, label="1e-3")
    _finish(ratio, "update / weight ratio", "step", drawn, "no update ratios recorded")
    _log_if_positive(ratio)
    figure.suptitle(title or "health")
    return figure


def sweep_figure(children: Sequence[tuple[str, RunSeries]], metric: str, title: str = "") -> Figure:
    """Every child's ``metric`` per epoch, labelled; each line ends with a dot where its run
    stopped, so a pruned trial is visibly shorter."""
    figure = Figure(figsize=(10, 5.5), layout="constrained")
    ax = figure.subplots()
    colors = _colors(len(children))
    drawn = False
    for (label, series), color in zip(children, colors, strict=True):
        points = series.get(metric)
        if _line(ax, points, x="epoch", label=label, color=color):
            drawn = True
            ax.plot([points.epoch[-1]], [_value(points.value[-1])], "o", color=color, markersize=4)
    _finish(ax, metric, "epoch", drawn, f"no child has reported {metric} yet", legend="outside")
    _log_if_wide(ax)
    figure.suptitle(title or f"{metric} per trial")
    return figure


def params_label(params: Mapping[str, Any]) -> str:
    """``{"optimizer.lr": 0.1, "model.dropout": 0.2}`` → ``"lr=0.1, dropout=0.2"`` (the last part
    of each key, the whole key where two would read the same)."""
    short = [key.rsplit(".", 1)[-1] for key in params]
    names = [s if short.count(s) == 1 else key for s, key in zip(short, params, strict=True)]
    return ", ".join(f"{name}={_format(value)}" for name, value in zip(names, params.values(), strict=True))


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _value(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _line(ax: Axes, points: Points | None, *, x: str, label: str | None, **style: Any) -> bool:
    """Plot one series (thinned to ``LINE_POINTS``); non-finite values are gaps. Whether it drew."""
    if points is None or not points.value:
        return False
    xs = points.epoch if x == "epoch" else points.step
    keep = kept_indices(points.value, LINE_POINTS)
    values = [_value(points.value[i]) for i in keep]
    marker = "o" if len(keep) <= 50 else None
    ax.plot([xs[i] for i in keep], values, label=label, marker=marker, markersize=3, **style)
    return True


def _marker(ax: Axes, points: Points | None, *, label: str) -> bool:
    if points is None or not points.value:
        return False
    ax.plot(points.epoch, [_value(v) for v in points.value], "*", markersize=10, label=label)
    return True


def _family(ax: Axes, series: RunSeries, prefix: str, ending: str = "", suffix: str = "", **style: Any) -> bool:
    """One line per layer or weight, in layer order: the series ``prefix<name>ending``."""
    names = per_layer(series, prefix, ending)
    for name, color in zip(names, _colors(len(names)), strict=True):
        label = name[len(prefix) : len(name) - len(ending)] + suffix
        _line(ax, series[name], x="step", label=label, color=color, **style)
    return bool(names)


def _colors(count: int) -> list[Any]:
    """Up to 10 lines: the default palette; more: a gradient, so order (first → last layer) reads."""
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    gradient = colormaps["viridis"]
    return [gradient(i / (count - 1)) for i in range(count)]


def _finish(ax: Axes, name: str, x: str, drawn: bool, empty: str, legend: str = "inside") -> None:
    ax.set_title(name)
    if not drawn:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xlabel(x)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    small = "x-small" if len(handles) > 8 else "small"
    if legend == "outside":
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=small, ncols=1 + len(handles) // 25)
    else:
        ax.legend(fontsize=small, ncols=1 + len(handles) // 8)


def _values(ax: Axes) -> list[float]:
    return [float(value) for line in ax.get_lines() for value in line.get_ydata()]


def spans_decades(values: Sequence[float], decades: float = DECADES_FOR_LOG) -> bool:
    """Whether the positive finite values span more than ``decades`` powers of ten."""
    positive = [v for v in values if math.isfinite(v) and v > 0]
    return bool(positive) and math.log10(max(positive) / min(positive)) > decades


def _log_if_wide(ax: Axes) -> None:
    if spans_decades(_values(ax)):
        ax.set_yscale("log")


def _log_if_positive(ax: Axes) -> None:
    if any(math.isfinite(v) and v > 0 for v in _values(ax)):
        ax.set_yscale("log")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    with _RENDER:
        figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
