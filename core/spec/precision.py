"""``precision``: the number format a run computes its forward pass and loss in, and which devices
can do it. One rule, torch-free, for the engine (its own device) and the service's submit (the
live workers' adverts), so both refuse the same specs with the same words."""

from typing import Literal

from core.errors import SpecError

Precision = Literal["fp32", "bf16", "fp16"]

HINTS: dict[str, str] = {
    "fp16": "use 'bf16' (CPUs and recent GPUs compute in bfloat16) or 'fp32', or train on a CUDA device",
    "bf16": "use 'fp32', or 'fp16' on a CUDA device",
}


def unsupported(precision: str, *, device_kind: str, bf16: bool) -> str | None:
    """Why a device of ``device_kind`` (torch's: cpu, cuda, ...; ``bf16``: whether it computes in
    bfloat16) cannot train at ``precision``; None when it can. fp16 autocasts with a GradScaler,
    which Trainyard runs on CUDA only."""
    if precision == "fp16" and device_kind != "cuda":
        return "fp16 (float16 autocast with a GradScaler) needs a CUDA device"
    if precision == "bf16" and not bf16:
        return "bf16 (bfloat16 autocast) needs a device that computes in bfloat16"
    return None


def refused(precision: str, message: str) -> SpecError:
    """The error at ``/precision``, with the hint of what to use instead."""
    return SpecError("/precision", message, HINTS.get(precision))
