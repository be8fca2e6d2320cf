"""A run's recorded metrics as series (metric name → its points, in step order), and the small
readings the verdict rules take from them: per-epoch values, per-layer names in layer order,
medians. No torch: the series come from the engine's history, the metrics file or the store."""

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Points:
    """One metric's points: parallel lists, in step order."""

    step: list[int] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    def per_epoch(self) -> list[tuple[int, float]]:
        """(epoch, value) once per epoch, in epoch order; the last point of an epoch wins."""
        last: dict[int, float] = {}
        for epoch, value in zip(self.epoch, self.value, strict=True):
            last[epoch] = value
        return sorted(last.items())

    def after_start(self) -> list[float]:
        """The values measured after step 0: step 0's update is the transient first step (Adam's
        is lr-sized whatever the gradient, a warmup's is zero)."""
        return [value for step, value in zip(self.step, self.value, strict=True) if step > 0]


RunSeries = dict[str, Points]


def from_points(points: Iterable[tuple[int, int, str, float]]) -> RunSeries:
    """Series from ``(step, epoch, name, value)`` points in any order; each series in step order
    (points of one step keep their order), names in the order they first appear."""
    ordered = sorted(((int(s), int(e), str(n), float(v)) for s, e, n, v in points), key=lambda point: point[0])
    series: RunSeries = {}
    for step, epoch, name, value in ordered:
        entry = series.setdefault(name, Points())
        entry.step.append(step)
        entry.epoch.append(epoch)
        entry.value.append(value)
    return series


def layer_index(name: str) -> int:
    """The index of the layer a per-layer metric names: 'grad_norm/3_dense.weight' → 3,
    'act/2_activation/std' → 2 (layers are named '{index}_{type}')."""
    head = name.split("/")[1].split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def layer_of(name: str) -> str:
    """'act/2_activation/std' → '2_activation'; 'grad_norm/1_dense.weight' → '1_dense.weight'."""
    return name.split("/")[1]


def per_layer(series: RunSeries, prefix: str, suffix: str = "") -> list[str]:
    """Names ``prefix<layer>suffix`` in layer order (weights of one layer in the order they first
    appear), e.g. ``per_layer(s, "grad_norm/")`` or ``per_layer(s, "act/", "/std")``."""
    names = [name for name in series if name.startswith(prefix) and name.endswith(suffix)]
    return sorted(names, key=layer_index)


def median(values: Iterable[float]) -> float:
    """The median of the finite values (nan when there are none)."""
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """Each value averaged with the ``window - 1`` before it (fewer at the start)."""
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]
