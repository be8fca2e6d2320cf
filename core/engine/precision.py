"""A run's ``precision`` on its device: refused where the device cannot compute in it, else the
autocast around forward and loss (training and evaluation alike) and, for fp16, the GradScaler."""

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from core.errors import SpecInvalid
from core.spec.precision import refused, unsupported

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def computes_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16: CPUs do (autocast's CPU kernels), CUDA devices when
    ``torch.cuda.is_bf16_supported()`` (as the worker's advert says)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def check_precision(precision: str, device: torch.device) -> None:
    """SpecInvalid at ``/precision`` when ``device`` cannot train at ``precision``."""
    why = unsupported(precision, device_kind=device.type, bf16=computes_bf16(device))
    if why is not None:
        raise SpecInvalid([refused(precision, f"{why}; this run's device is {device}")])


@dataclass
class MixedPrecision:
    """The run's autocast (none for fp32) and its GradScaler (fp16 only)."""

    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None

    @classmethod
    def of(cls, precision: str, device: torch.device) -> "MixedPrecision":
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        return cls(precision, device, scaler)

    def autocast(self) -> AbstractContextManager:
        """The context forward and loss run in."""
        dtype = DTYPES[self.name]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)
