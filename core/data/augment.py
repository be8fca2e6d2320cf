"""Training-time augmentations on whole batches on the training device; each sample is
augmented with probability ``p``. Validation and test data are never augmented."""

from typing import ClassVar, Literal

import torch
from pydantic import Field

from core.data.dataset import DataKind
from core.spec.base import SpecRegistry, TypedSpec

AUGMENTATIONS = SpecRegistry("augmentation")


class AugmentSpec(TypedSpec):
    p: float = Field(0.5, ge=0.0, le=1.0)
    kinds: ClassVar[tuple[DataKind, ...]] = ()

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The augmented batch (every sample); ``__call__`` picks which samples keep it."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        chosen = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(chosen.view(-1, *([1] * (x.dim() - 1))), self.augment(x), x)


@AUGMENTATIONS.add
class HFlip(AugmentSpec):
    """Mirror images left–right."""

    type: Literal["hflip"] = "hflip"
    kinds: ClassVar = ("image",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)


@AUGMENTATIONS.add
class VFlip(AugmentSpec):
    """Mirror images top–bottom."""

    type: Literal["vflip"] = "vflip"
    kinds: ClassVar = ("image",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-2)


@AUGMENTATIONS.add
class GaussianNoise(AugmentSpec):
    """Add N(0, std²) noise to every feature."""

    type: Literal["gaussian_noise"] = "gaussian_noise"
    std: float = Field(0.1, gt=0.0)
    kinds: ClassVar = ("image", "tabular", "sequence")

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn(x.shape, device=x.device)


@AUGMENTATIONS.add
class Cutout(AugmentSpec):
    """Zero ``count`` random size×size squares of each image (DeVries & Taylor)."""

    type: Literal["cutout"] = "cutout"
    size: int = Field(4, ge=1)
    count: int = Field(1, ge=1, le=16)
    kinds: ClassVar = ("image",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        rows = torch.arange(height, device=x.device).view(1, height, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, width)
        keep = torch.ones((n, height, width), dtype=torch.bool, device=x.device)
        for _ in range(self.count):
            top = torch.randint(-self.size + 1, height, (n, 1, 1), device=x.device)
            left = torch.randint(-self.size + 1, width, (n, 1, 1), device=x.device)
            inside = (rows >= top) & (rows < top + self.size) & (cols >= left) & (cols < left + self.size)
            keep &= ~inside
        return x * keep.unsqueeze(1).to(x.dtype)


@AUGMENTATIONS.add
class Jitter(AugmentSpec):
    """Add N(0, std²) noise to every step of a series."""

    type: Literal["jitter"] = "jitter"
    std: float = Field(0.03, gt=0.0)
    kinds: ClassVar = ("sequence",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn(x.shape, device=x.device)


@AUGMENTATIONS.add
class Scaling(AugmentSpec):
    """Multiply each series by a random factor N(1, std²)."""

    type: Literal["scaling"] = "scaling"
    std: float = Field(0.1, gt=0.0)
    kinds: ClassVar = ("sequence",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        factor = 1.0 + self.std * torch.randn((x.shape[0], 1, 1), device=x.device)
        return x * factor


@AUGMENTATIONS.add
class TimeShift(AugmentSpec):
    """Roll each series by a random number of steps in [-max_shift, max_shift]."""

    type: Literal["time_shift"] = "time_shift"
    max_shift: int = Field(2, ge=1)
    kinds: ClassVar = ("sequence",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (x.shape[0], 1), device=x.device)
        index = (torch.arange(steps, device=x.device).view(1, -1) - shift) % steps
        return torch.gather(x, 1, index.unsqueeze(-1).expand_as(x))


def list_augmentations() -> list[str]:
    return AUGMENTATIONS.names()
