"""Training-time augmentations on whole batches on the training device; each sample is
augmented with probability ``p``. Validation and test data are never augmented.

Images are (N, C, H, W) batches, series (N, steps, features), text (N, steps) token ids
left-padded with 0. Rotation, scaling and elastic distortion use kornia.augmentation; the rest
are batched torch ops (no per-sample Python loop). The trainer calls ``apply(x, y)``: only
mixup, which mixes samples, changes the targets too."""

import importlib.util
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.data.dataset import DataKind, Dataset
from core.data.text import PAD_ID
from core.registry import SpecRegistry, TypedSpec

AUGMENTATIONS = SpecRegistry("augmentation")


class AugmentSpec(TypedSpec):
    p: float = Field(0.5, ge=0.0, le=1.0)
    kinds: ClassVar[tuple[DataKind, ...]] = ()
    needs: ClassVar[str | None] = None  # an optional package the augmentation imports

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The augmented batch (every sample); ``__call__`` picks which samples keep it."""
        raise NotImplementedError

    def prepare(self, data: Dataset) -> None:
        """Bind what the augmentation needs from the data (a vocabulary); called when the run is planned."""
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.needs is None or importlib.util.find_spec(cls.needs) is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.p == 1.0:
            return self.augment(x)
        chosen = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(chosen.view(-1, *([1] * (x.dim() - 1))), self.augment(x), x)

    def apply(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch and its targets (what the trainer calls); the targets pass unchanged."""
        return self(x), y


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
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        spans = torch.tensor([height + self.size - 1, width + self.size - 1], device=x.device).view(1, 2, 1)
        inside: torch.Tensor | None = None
        for _ in range(self.count):
            # the top-left corner, anywhere a square still overlaps the image
            corner = (torch.rand((n, 2, 1), device=x.device) * spans).long() - (self.size - 1)
            top, left = corner[:, 0], corner[:, 1]
            in_rows = (rows >= top) & (rows < top + self.size)
            in_cols = (cols >= left) & (cols < left + self.size)
            square = in_rows.unsqueeze(2) & in_cols.unsqueeze(1)
            inside = square if inside is None else inside | square
        assert inside is not None
        return x.masked_fill(inside.unsqueeze(1), 0.0)


@AUGMENTATIONS.add
class ColorJitter(AugmentSpec):
    """Random contrast and brightness per image: contrast scales the image about its mean by a factor
    in [1 − contrast, 1 + contrast], brightness adds a shift in [−brightness, brightness] (kornia's
    ColorJitter strengths: factors 1 ± s), in the data's units (standard deviations after
    ``standardize``).

    Batched torch ops, not kornia's ColorJitter: kornia clamps to [0, 1] and scales contrast about 0,
    both wrong for standardized images. The two commute (a shift moves the mean along with it)."""

    type: Literal["color_jitter"] = "color_jitter"
    brightness: float = Field(0.2, ge=0.0, le=10.0)
    contrast: float = Field(0.2, ge=0.0, le=1.0)
    kinds: ClassVar = ("image",)

    @model_validator(mode="after")
    def _changes_something(self) -> "ColorJitter":
        if self.brightness == 0.0 and self.contrast == 0.0:
            raise PydanticCustomError(
                "spec_rule", "brightness and contrast are both 0: nothing would change", {"hint": "set one above 0"}
            )
        return self

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        per_image = (x.shape[0],) + (1,) * (x.dim() - 1)
        if self.contrast:
            mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
            factor = 1.0 + self.contrast * (2.0 * torch.rand(per_image, device=x.device) - 1.0)
            x = mean + factor * (x - mean)
        if self.brightness:
            x = x + self.brightness * (2.0 * torch.rand(per_image, device=x.device) - 1.0)
        return x


@AUGMENTATIONS.add
class Mixup(AugmentSpec):
    """Mix each batch with a shuffled copy of itself (Zhang et al.): x' = λx + (1 − λ)x[perm] and the
    targets alike, with one λ ~ Beta(alpha, alpha) per batch; class indices become mixed one-hot
    probabilities, binary and regression targets mixed values. A sample left unmixed (probability
    1 − p) keeps λ = 1. Drawn on the device (no host sync)."""

    type: Literal["mixup"] = "mixup"
    p: float = Field(1.0, ge=0.0, le=1.0)
    alpha: float = Field(0.2, gt=0.0)
    kinds: ClassVar = ("image", "tabular", "sequence")
    _classes: int | None = PrivateAttr(None)

    def prepare(self, data: Dataset) -> None:
        self._classes = None if data.y.is_floating_point() else len(data.classes or [])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("mixup mixes the targets too: call apply(x, y)")

    def apply(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.p == 0.0:
            return x, y
        if not y.is_floating_point():
            if not self._classes:
                raise RuntimeError("mixup needs the classes of class-index targets (call prepare first)")
            y = F.one_hot(y, self._classes).to(x.dtype)
        n = x.shape[0]
        concentration = torch.full((), self.alpha, device=x.device)
        weight = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
        weight = torch.where(torch.rand(n, device=x.device) < self.p, weight, 1.0)
        order = torch.randperm(n, device=x.device)
        return mix(x, weight, order), mix(y, weight, order)


def mix(t: torch.Tensor, weight: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """weight · t + (1 − weight) · t[order], one weight per sample."""
    w = weight.view(-1, *([1] * (t.dim() - 1))).to(t.dtype)
    return w * t + (1.0 - w) * t[order]


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


class KorniaAugment(AugmentSpec):
    """An image augmentation run by a kornia.augmentation module, which picks the samples (``p``) itself."""

    kinds: ClassVar = ("image",)
    needs: ClassVar = "kornia"
    _module: Any = PrivateAttr(None)
    _size: tuple[int, ...] | None = PrivateAttr(None)

    def module(self, p: float, size: tuple[int, ...]) -> torch.nn.Module:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self._module is None or self._size != tuple(x.shape[-2:]):
            self._size = tuple(x.shape[-2:])
            self._module = self.module(self.p, self._size)
        return self._module(x)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(1.0, tuple(x.shape[-2:]))(x)


@AUGMENTATIONS.add
class Rotate(KorniaAugment):
    """Rotate each image by a random angle in [-degrees, degrees] (zeros fill the corners)."""

    type: Literal["rotate"] = "rotate"
    degrees: float = Field(15.0, gt=0.0, le=180.0)

    def module(self, p: float, size: tuple[int, ...]) -> torch.nn.Module:
        import kornia.augmentation as K

        return K.RandomRotation(self.degrees, p=p)


@AUGMENTATIONS.add
class Scale(KorniaAugment):
    """Zoom each image by a random factor in ``range`` about its centre."""

    type: Literal["scale"] = "scale"
    range: tuple[float, float] = (0.9, 1.1)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 10.0:
            raise ValueError("range must be [low, high] with 0 < low ≤ high ≤ 10")
        return value

    def module(self, p: float, size: tuple[int, ...]) -> torch.nn.Module:
        import kornia.augmentation as K

        return K.RandomAffine(degrees=0.0, scale=self.range, p=p)


@AUGMENTATIONS.add
class Elastic(KorniaAugment):
    """Elastic distortion (Simard et al.): a random displacement field smoothed by a Gaussian of
    ``sigma`` pixels, scaled by ``alpha`` (in units of half the image size)."""

    type: Literal["elastic"] = "elastic"
    alpha: float = Field(1.0, gt=0.0, le=10.0)
    sigma: float = Field(2.0, gt=0.0, le=64.0)

    def module(self, p: float, size: tuple[int, ...]) -> torch.nn.Module:
        import kornia.augmentation as K

        kernel = min(2 * math.ceil(3 * self.sigma) + 1, 2 * min(size) - 1)  # the blur must fit the image
        return K.RandomElasticTransform(
            kernel_size=(kernel, kernel), sigma=(self.sigma, self.sigma), alpha=(self.alpha, self.alpha), p=p
        )


@AUGMENTATIONS.add
class RandomCrop(AugmentSpec):
    """Pad each image with ``padding`` zero pixels on every side and crop it back to its size at a
    random offset (a random shift of up to ``padding`` pixels)."""

    type: Literal["random_crop"] = "random_crop"
    padding: int = Field(2, ge=1, le=64)
    kinds: ClassVar = ("image",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        pad = self.padding
        padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)
        stride = width + 2 * pad
        offset = torch.randint(0, 2 * pad + 1, (n, 2), device=x.device)  # the crop's top-left corner
        window = torch.arange(height, device=x.device).view(-1, 1) * stride + torch.arange(width, device=x.device)
        index = window.view(1, -1) + (offset[:, :1] * stride + offset[:, 1:])
        return padded.gather(2, index.unsqueeze(1).expand(n, c, height * width)).view(n, c, height, width)


@AUGMENTATIONS.add
class Smooth(AugmentSpec):
    """Moving average of each series over ``window`` steps (edges repeat the end values)."""

    type: Literal["smooth"] = "smooth"
    window: int = Field(3, ge=2, le=1001)
    kinds: ClassVar = ("sequence",)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        channels_first = x.transpose(1, 2)
        padded = F.pad(channels_first, ((self.window - 1) // 2, self.window // 2), mode="replicate")
        return F.avg_pool1d(padded, self.window, stride=1).transpose(1, 2)


class TextAugment(AugmentSpec):
    kinds: ClassVar = ("text",)
    _tables: dict[str, torch.Tensor] = PrivateAttr(default_factory=dict)

    def table(self, name: str, device: torch.device) -> torch.Tensor:
        """A tensor bound by ``prepare``, cached on ``device``."""
        key = f"{name}@{device}"
        if key not in self._tables:
            if name not in self._tables:
                raise RuntimeError(f"{self.type} needs text data with a vocabulary (call prepare first)")
            self._tables[key] = self._tables[name].to(device)
        return self._tables[key]

    def prepare(self, data: Dataset) -> None:
        if data.tokenizer is not None:
            self._tables.clear()
            self._tables.update(self.tables(data))

    def tables(self, data: Dataset) -> dict[str, torch.Tensor]:
        return {}


def left_pad(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The ids of ``x`` where ``keep`` holds, in order and left-padded with 0 (batched scatter)."""
    n, steps = x.shape
    position = steps - keep.flip(1).cumsum(1).flip(1)  # a kept token's new place
    target = torch.where(keep, position, torch.full_like(position, steps))  # dropped ones go to a spare column
    out = torch.full((n, steps + 1), PAD_ID, dtype=x.dtype, device=x.device)
    return out.scatter_(1, target, torch.where(keep, x, torch.full_like(x, PAD_ID)))[:, :steps]


@AUGMENTATIONS.add
class RandomDelete(TextAugment):
    """Drop each word with probability ``rate`` (at least one word is kept), then re-pad."""

    type: Literal["random_delete"] = "random_delete"
    rate: float = Field(0.1, gt=0.0, le=1.0)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x != PAD_ID
        keep = tokens & (torch.rand(x.shape, device=x.device) >= self.rate)
        keep = torch.where(keep.any(1, keepdim=True), keep, tokens)
        return left_pad(x, keep)


@AUGMENTATIONS.add
class SynonymReplace(TextAugment):
    """Replace each word that has a synonym in the bundled table (and the vocabulary) with a random
    synonym, with probability ``rate``; ids are mapped through a (vocabulary × synonyms) id table."""

    type: Literal["synonym_replace"] = "synonym_replace"
    rate: float = Field(0.3, gt=0.0, le=1.0)

    def tables(self, data: Dataset) -> dict[str, torch.Tensor]:
        assert data.tokenizer is not None
        return {"synonyms": data.tokenizer.synonym_table()}

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        synonyms = self.table("synonyms", x.device)
        pick = torch.randint(0, synonyms.shape[1], x.shape, device=x.device)
        replaced = synonyms[x, pick]
        return torch.where(torch.rand(x.shape, device=x.device) < self.rate, replaced, x)


@AUGMENTATIONS.add
class SentenceShuffle(TextAugment):
    """Shuffle the order of the sentences of each text (a sentence ends at '.', '!' or '?')."""

    type: Literal["sentence_shuffle"] = "sentence_shuffle"

    def tables(self, data: Dataset) -> dict[str, torch.Tensor]:
        assert data.tokenizer is not None
        return {"ends": torch.tensor(data.tokenizer.sentence_end_ids(), dtype=torch.int64)}

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        n, steps = x.shape
        is_end = torch.isin(x, self.table("ends", x.device)).long()
        sentence = is_end.cumsum(1) - is_end  # each token's sentence number; an end mark closes its sentence
        rank = torch.rand((n, steps + 1), device=x.device).argsort(1).argsort(1)  # a random order of sentences
        position = torch.arange(steps, device=x.device).expand(n, steps)
        key = rank.gather(1, sentence) * (steps + 1) + position
        key = torch.where(x == PAD_ID, position - steps, key)  # padding stays in front
        return x.gather(1, key.argsort(1))
