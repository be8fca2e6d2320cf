"""Thin a long series for display: min/max per bucket. The first and last points are kept, and
each bucket of the points between keeps its lowest and highest value (in their order), so spikes,
the global minimum and the global maximum survive. A non-finite value (None, NaN, inf) is a gap
or a divergence, and a bucket holding one keeps its first one as it is."""

import math
from collections.abc import Sequence


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def kept_indices(values: Sequence[float | None], max_points: int) -> list[int]:
    """The indices (ascending) of at most ``max_points`` (≥ 2) points that keep the series' shape."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, not {max_points}")
    n = len(values)
    if n <= max_points:
        return list(range(n))
    per_bucket = 2 if all(_finite(v) for v in values) else 3  # min, max and the first non-finite point
    buckets = (max_points - 2) // per_bucket
    inner = n - 2
    kept = {0, n - 1}
    for b in range(buckets):
        start, stop = 1 + b * inner // buckets, 1 + (b + 1) * inner // buckets
        finite = [i for i in range(start, stop) if _finite(values[i])]
        if finite:
            kept.add(min(finite, key=values.__getitem__))
            kept.add(max(finite, key=values.__getitem__))
        gap = next((i for i in range(start, stop) if not _finite(values[i])), None)
        if gap is not None:
            kept.add(gap)
    return sorted(kept)


def downsample(
    step: Sequence[int], epoch: Sequence[int], value: Sequence[float | None], max_points: int
) -> tuple[list[int], list[int], list[float | None]]:
    """A columnar series (step[i], epoch[i], value[i]) thinned to at most ``max_points`` points."""
    keep = kept_indices(value, max_points)
    return [step[i] for i in keep], [epoch[i] for i in keep], [value[i] for i in keep]
