"""Plots render to PNG whatever a run recorded (nothing at all included), and long series thin
to min/max buckets that keep their shape."""

import io
import math
import random

import pytest
from matplotlib.axes import Axes
from matplotlib.image import imread

from core.insight.downsample import downsample, kept_indices
from core.insight.plots import (
    curves_figure,
    curves_png,
    health_figure,
    health_png,
    params_label,
    spans_decades,
    sweep_curves_png,
    sweep_figure,
)
from core.insight.series import Points

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def per_epoch(values: list[float]) -> Points:
    epochs = list(range(1, len(values) + 1))
    return Points([10 * e for e in epochs], epochs, values)


def per_step(values: list[float], every: int = 5) -> Points:
    steps = [every * i for i in range(len(values))]
    return Points(steps, [s // 100 + 1 for s in steps], values)


def image(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, read back by a decoder."""
    assert png.startswith(SIGNATURE)
    height, width, _ = imread(io.BytesIO(png), format="png").shape
    return width, height


def a_run(epochs: int = 10) -> dict[str, Points]:
    series = {
        "train_loss": per_epoch([2.3 * math.exp(-e / 2) for e in range(epochs)]),
        "val_loss": per_epoch([2.3 * math.exp(-e / 3) + 0.02 * e for e in range(epochs)]),
        "train_accuracy": per_epoch([1 - math.exp(-e / 2) for e in range(epochs)]),
        "val_accuracy": per_epoch([0.9 - math.exp(-e / 2) for e in range(epochs)]),
        "test_accuracy": Points([10 * epochs], [epochs], [0.88]),
        "lr": per_epoch([0.1 * 0.9**e for e in range(epochs)]),
    }
    for layer in range(3):
        series[f"act/{layer * 2 + 1}_relu/std"] = per_step([0.5 + 0.01 * i for i in range(200)])
        series[f"act/{layer * 2 + 1}_relu/dead"] = per_step([0.1 * layer] * 200)
        series[f"grad_norm/{layer * 2}_dense.weight"] = per_step([10.0 ** (-layer)] * 200)
        series[f"update_ratio/{layer * 2}_dense.weight"] = per_step([1e-3 * (1 + layer)] * 200)
    return series


def test_curves_and_health_are_pngs_of_a_sane_size() -> None:
    for png in (curves_png(a_run(), "digits"), health_png(a_run(), "digits")):
        width, height = image(png)
        assert 600 <= width <= 2000 and 300 <= height <= 1200
        assert 10_000 < len(png) < 2_000_000


def panels(figure) -> dict[str, Axes]:
    return {ax.get_title(): ax for ax in figure.axes}


def labels(ax: Axes) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def notes(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.texts]


def test_curves_draw_train_val_and_test_per_panel() -> None:
    drawn = panels(curves_figure(a_run(), "digits"))
    assert list(drawn) == ["loss", "accuracy", "learning rate"]
    assert labels(drawn["loss"]) == ["train", "val"] and labels(drawn["accuracy"]) == ["train", "val", "test"]
    assert list(drawn["loss"].get_lines()[1].get_xdata()) == list(range(1, 11))  # per epoch
    assert len(drawn["learning rate"].get_lines()) == 1


def test_health_draws_one_line_per_layer_and_the_update_ratio_guide() -> None:
    drawn = panels(health_figure(a_run(), "digits"))
    assert labels(drawn["activation std"]) == ["1_relu", "3_relu", "5_relu"]
    assert labels(drawn["dead / saturated share"]) == ["1_relu dead", "3_relu dead", "5_relu dead"]
    assert labels(drawn["gradient norm"]) == ["0_dense.weight", "2_dense.weight", "4_dense.weight"]
    assert drawn["gradient norm"].get_yscale() == "log" and drawn["update / weight ratio"].get_yscale() == "log"
    guide = drawn["update / weight ratio"].get_lines()[-1]
    assert guide.get_label() == "1e-3" and guide.get_linestyle() == "--" and list(guide.get_ydata()) == [1e-3] * 2
    assert list(drawn["activation std"].get_lines()[0].get_xdata()[:3]) == [0, 5, 10]  # per step


def test_a_run_with_no_data_says_so_in_each_panel_and_still_gives_a_png() -> None:
    for png in (curves_png({}, "nothing yet"), health_png({}), sweep_curves_png([], "val_loss")):
        assert image(png)[0] > 0
    curves = panels(curves_figure({"train_loss": Points([], [], [])}, "empty series"))
    assert [notes(ax) for ax in curves.values()] == [["no loss recorded"], ["no accuracy recorded"], ["no lr recorded"]]
    health = panels(health_figure({}))
    assert notes(health["activation std"]) == notes(health["dead / saturated share"]) == ["no activation statistics"]
    assert notes(health["gradient norm"]) == ["no gradient norms recorded"]
    tanh_free = panels(health_figure({"act/1_gelu/std": per_step([1.0] * 5)}))
    assert notes(tanh_free["dead / saturated share"]) == ["no rectifier or bounded activation"]
    assert notes(panels(sweep_figure([("lr=0.1", {})], "val_loss"))["val_loss"]) == [
        "no child has reported val_loss yet"
    ]


def test_non_finite_values_and_zero_gradients_do_not_break_a_plot() -> None:
    series = a_run()
    series["train_loss"] = per_epoch([2.3, 5.0, math.inf, math.nan])
    series["grad_norm/0_dense.weight"] = per_step([0.0] * 50)  # zero init: nothing to show on a log axis
    series["update_ratio/0_dense.weight"] = per_step([0.0] * 50)
    assert image(curves_png(series, "diverged")) and image(health_png(series))
    zero = {"grad_norm/0_dense.weight": per_step([0.0] * 50)}
    assert panels(health_figure(zero))["gradient norm"].get_yscale() == "linear"


def test_a_loss_spanning_more_than_two_decades_gets_a_log_axis() -> None:
    assert spans_decades([10.0, 1.0, 0.1, 0.01]) and not spans_decades([1.0, 0.8, 0.5, 0.02])
    assert not spans_decades([0.0, math.nan, 1.0]) and not spans_decades([])
    wide = panels(curves_figure({"train_loss": per_epoch([10.0, 1.0, 0.1, 0.01])}, "wide"))
    narrow = panels(curves_figure({"train_loss": per_epoch([1.0, 0.8, 0.6, 0.5])}, "narrow"))
    assert wide["loss"].get_yscale() == "log" and narrow["loss"].get_yscale() == "linear"


def test_sweep_overlay_draws_every_child_and_a_pruned_one_stops_early() -> None:
    children = [
        (params_label({"optimizer.lr": 0.1}), {"val_loss": per_epoch([2.0, 1.0, 0.5, 0.3])}),
        (params_label({"optimizer.lr": 1.0}) + " (pruned)", {"val_loss": per_epoch([2.0, 3.0])}),
        ("trial 2 (failed)", {}),
    ]
    assert image(sweep_curves_png(children, "val_loss", "lr sweep"))
    ax = panels(sweep_figure(children, "val_loss"))["val_loss"]
    assert labels(ax) == ["lr=0.1", "lr=1 (pruned)"]
    ends = {line.get_label(): max(line.get_xdata()) for line in ax.get_lines() if line.get_label() in labels(ax)}
    assert ends == {"lr=0.1": 4, "lr=1 (pruned)": 2}
    many = [(f"trial {i}", {"val_loss": per_epoch([1.0 / (i + 1)] * 5)}) for i in range(40)]
    assert len(labels(panels(sweep_figure(many, "val_loss"))["val_loss"])) == 40
    assert image(sweep_curves_png(many, "val_loss"))


def test_params_label_uses_the_last_part_of_each_key_unless_two_collide() -> None:
    assert params_label({"optimizer.lr": 0.1}) == "lr=0.1"
    assert params_label({"optimizer.lr": 0.000123456, "epochs": 4}) == "lr=0.0001235, epochs=4"
    assert params_label({"model.dropout": 0.1, "data.dropout": 0.2}) == "model.dropout=0.1, data.dropout=0.2"
    assert params_label({}) == ""


def test_downsampling_keeps_the_shape_of_a_long_series() -> None:
    rng = random.Random(0)
    n = 100_000
    value = [math.sin(i / 5000) + rng.gauss(0, 0.1) for i in range(n)]
    value[31_337] = 9.0  # one spike
    step, epoch = list(range(0, 5 * n, 5)), [i // 1000 for i in range(n)]
    for max_points in (2, 3, 100, 2000, 99_999):
        s, e, v = downsample(step, epoch, value, max_points)
        assert 2 <= len(s) <= max_points and len(s) == len(e) == len(v)
        assert s == sorted(s) and (s[0], s[-1]) == (0, step[-1])  # in order, first and last kept
        kept = {i // 5 for i in s}
        assert all(value[i] == vi and epoch[i] == ei for i, vi, ei in zip(sorted(kept), v, e, strict=True))
        if max_points >= 100:
            assert max(v) == 9.0 and min(v) == min(value)
    assert downsample(step[:50], epoch[:50], value[:50], 2000) == (step[:50], epoch[:50], value[:50])


def test_downsampling_keeps_non_finite_points_as_they_are() -> None:
    value: list[float | None] = [float(i % 7) for i in range(10_000)]
    value[5_000] = None
    value[7_777] = math.nan
    keep = kept_indices(value, 300)
    assert len(keep) <= 300 and 5_000 in keep and 7_777 in keep
    assert min(value[i] for i in keep if i not in (5_000, 7_777)) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        kept_indices(value, 1)
