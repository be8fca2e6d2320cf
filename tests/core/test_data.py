"""Data registries: preprocessors, augmentations and sources, each entry parametrized over its registry."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.data.augment import AUGMENTATIONS
from core.data.dataset import Dataset
from core.data.files import data_access
from core.data.preprocess import PREPROCESSORS, apply_preprocessing, fit_preprocessing
from core.data.sources import BUILTIN_SETS, BUNDLED, SOURCES, set_parameters
from core.data.text import PAD_ID, SENTENCE_ENDS, SYNONYMS, encode_dataset
from core.engine.events import Callback
from core.engine.run import prepare_splits
from core.errors import SpecInvalid
from core.spec.schema import parse_spec
from tests.core.helpers import IRIS, spec_document, train

# ---------------------------------------------------------------------------------------------
# preprocessors: fitted on one set of features, applied with those statistics to another


def _features(seed: int, n: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + torch.tensor([3.0, -2.0, 10.0, 0.0])
    x[:, 3] = 7.0  # a constant feature must not divide by zero
    return x


def _check_standardize(train_x, other_x, train_out, other_out) -> None:
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False)
    torch.testing.assert_close(train_out[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_out[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(train_out[:, 3], torch.zeros(200))  # constant feature: centred, std kept at 1
    torch.testing.assert_close(other_out[:, :3], (other_x[:, :3] - mean[:3]) / std[:3])


def _check_zero_center(train_x, other_x, train_out, other_out) -> None:
    torch.testing.assert_close(train_out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_out.std(0), train_x.std(0), atol=1e-5, rtol=1e-5)  # scale unchanged
    torch.testing.assert_close(other_out, other_x - train_x.mean(0))


def _check_minmax(train_x, other_x, train_out, other_out) -> None:
    torch.testing.assert_close(train_out[:, :3].amin(0), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(train_out[:, :3].amax(0), torch.ones(3), atol=1e-6, rtol=0)
    low, high = train_x.amin(0), train_x.amax(0)
    torch.testing.assert_close(other_out[:, :3], (other_x[:, :3] - low[:3]) / (high - low)[:3])
    assert torch.isfinite(other_out).all()


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centered = x - x.mean(0)
    return centered.T @ centered / (x.shape[0] - 1)


def _check_pca(train_x, other_x, train_out, other_out) -> None:
    assert train_out.shape == (200, 2) and other_out.shape == (200, 2)
    # whitened principal components: uncorrelated, unit variance on the training data
    torch.testing.assert_close(_covariance(train_out), torch.eye(2), atol=1e-3, rtol=0)
    # other data: projected on the training data's two leading axes, scaled by their std (up to sign)
    values, vectors = torch.linalg.eigh(_covariance(train_x.double()))
    axes, stds = vectors[:, -2:].flip(1), values[-2:].flip(0).sqrt()
    expected = ((other_x.double() - train_x.double().mean(0)) @ axes / stds).float()
    assert axes[:, 0].abs().argmax().item() == 1, "the first axis is the feature of largest variance"
    for column in range(2):
        sign = torch.sign((other_out[:, column] * expected[:, column]).sum())
        torch.testing.assert_close(other_out[:, column] * sign, expected[:, column], atol=1e-3, rtol=1e-3)


def _check_zca_whiten(train_x, other_x, train_out, other_out) -> None:
    assert train_out.shape == train_x.shape
    expected = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0]))  # the constant feature stays 0
    torch.testing.assert_close(_covariance(train_out), expected, atol=1e-3, rtol=0)
    # ZCA is the symmetric whitening: it keeps each feature closest to itself
    assert all(torch.corrcoef(torch.stack([train_out[:, i], train_x[:, i]]))[0, 1] > 0.9 for i in range(3))
    assert torch.isfinite(other_out).all()


PREPROCESS_CASES: dict[str, tuple[dict, Callable]] = {
    "standardize": ({}, _check_standardize),
    "zero_center": ({}, _check_zero_center),
    "minmax": ({}, _check_minmax),
    "pca": ({"components": 2, "whiten": True}, _check_pca),
    "zca_whiten": ({}, _check_zca_whiten),
}


def test_preprocess_expectations_cover_the_registry():
    assert set(PREPROCESS_CASES) == set(PREPROCESSORS.names())


@pytest.mark.parametrize("name", PREPROCESSORS.names())
def test_preprocessor_fits_on_one_set_and_applies_to_another(name):
    kwargs, check = PREPROCESS_CASES[name]
    train_x, other_x = _features(0), _features(1)
    steps = [PREPROCESSORS.get(name)(**kwargs)]
    fitted = fit_preprocessing(steps, train_x)
    assert fitted and all(key.startswith("0.") for key in fitted)
    check(train_x, other_x, apply_preprocessing(steps, fitted, train_x), apply_preprocessing(steps, fitted, other_x))


def test_preprocessing_is_fitted_on_the_training_split_only():
    spec = parse_spec({"data": {"source": IRIS, "preprocess": [{"type": "standardize"}]}})
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    splits = prepare_splits(spec, data)
    raw_train = data.x[_rows_of(splits.train.x, data.x, splits.fitted_preprocessing)]
    torch.testing.assert_close(splits.fitted_preprocessing["0.mean"], raw_train.mean(0))
    assert not torch.allclose(splits.fitted_preprocessing["0.mean"], data.x.mean(0))
    torch.testing.assert_close(splits.train.x.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert splits.test.x.mean(0).abs().max() > 1e-3  # test data uses the training statistics, not its own


def _rows_of(transformed: torch.Tensor, raw: torch.Tensor, fitted: dict[str, torch.Tensor]) -> torch.Tensor:
    """Indices of the raw rows the transformed training rows came from (undo the standardisation)."""
    restored = transformed * fitted["0.std"] + fitted["0.mean"]
    distance = torch.cdist(restored, raw)
    return distance.argmin(1)


def test_an_empty_preprocess_list_leaves_features_raw():
    spec = parse_spec({"data": {"source": IRIS, "preprocess": []}})
    data = spec.data.source.load(task=spec.task, seed=spec.seed)
    splits = prepare_splits(spec, data)
    assert splits.fitted_preprocessing == {}
    assert splits.train.x.mean().item() > 1.0  # iris in centimetres


def test_default_preprocessing_is_standardize():
    spec = parse_spec({"data": {"source": IRIS}})
    assert [step.type for step in spec.data.preprocess] == ["standardize"]


# ---------------------------------------------------------------------------------------------
# augmentations: p=1 changes a batch (in the way the augmentation says), p=0 leaves it alone


@functools.cache
def _data(kind: str) -> Dataset:
    """A batch-sized data set of each kind (text: toy reviews as token ids with their vocabulary)."""
    if kind == "text":
        texts = SOURCES.get("builtin")(name="toy_text", n_samples=64).load(task="binary", seed=0)
        return encode_dataset(texts, np.arange(64), max_length=24)
    g = torch.Generator().manual_seed(0)
    shape = {"image": (64, 1, 9, 9), "sequence": (64, 16, 1), "tabular": (64, 5)}[kind]
    x = torch.randn(shape, generator=g) + 3.0  # no zeros: cutout's and crop's zeros are visible
    return Dataset(x, torch.zeros(64), kind)


def _check_hflip(x, out) -> None:
    torch.testing.assert_close(out, x.flip(-1))


def _check_vflip(x, out) -> None:
    torch.testing.assert_close(out, x.flip(-2))


def _check_noise(std: float) -> Callable:
    def check(x, out) -> None:
        assert (out - x).std().item() == pytest.approx(std, rel=0.15)
        assert (out - x).mean().item() == pytest.approx(0.0, abs=0.05 * std + 0.01)

    return check


def _check_cutout(x, out) -> None:
    zeroed = out == 0
    assert torch.equal(out[~zeroed], x[~zeroed]), "cutout only zeroes pixels"
    per_image = zeroed.flatten(1).sum(1)
    assert (per_image >= 1).all(), "every square overlaps its image"
    assert (per_image <= 3 * 3).all()


def _check_scaling(x, out) -> None:
    factor = out / x
    torch.testing.assert_close(factor, factor[:, :1, :].expand_as(factor))  # one factor per series
    assert factor[:, 0, 0].std().item() > 0.01


def _check_time_shift(x, out) -> None:
    for original, shifted in zip(x, out, strict=True):
        assert any(torch.equal(shifted, original.roll(s, dims=0)) for s in range(-2, 3))


def _check_random_crop(x, out) -> None:
    pad = 2
    padded = F.pad(x, (pad, pad, pad, pad))
    height, width = x.shape[-2:]
    for i in range(x.shape[0]):
        shifts = [
            padded[i, :, top : top + height, left : left + width]
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
        ]
        assert any(torch.equal(out[i], crop) for crop in shifts), f"image {i} is not a shifted crop"


def _check_center_kept(x, out) -> None:
    """Rotation and zoom about the centre keep the centre pixel of an odd-sized image."""
    torch.testing.assert_close(out[..., 4, 4], x[..., 4, 4], atol=1e-4, rtol=1e-4)
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3, "every image changed"


def _check_elastic(x, out) -> None:
    assert torch.isfinite(out).all()
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-4, "every image changed"


def _check_smooth(x, out) -> None:
    padded = torch.cat([x[:, :1], x, x[:, -1:]], dim=1)  # edges repeat the end values
    expected = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
    torch.testing.assert_close(out, expected)


def _words(row: torch.Tensor) -> list[str]:
    vocab = _data("text").tokenizer.vocab
    return [vocab[i] for i in row.tolist() if i != PAD_ID]


def _check_left_padded(out) -> None:
    tokens = out != PAD_ID
    assert torch.equal(tokens, tokens.cummax(1).values), "padding stays in front"


def _check_random_delete(x, out) -> None:
    _check_left_padded(out)
    dropped = 0
    for before, after in zip(x, out, strict=True):
        words, kept = _words(before), _words(after)
        assert 1 <= len(kept) <= len(words)
        remaining = iter(words)
        assert all(word in remaining for word in kept), "kept words stay in order"
        dropped += len(words) - len(kept)
    total = sum(len(_words(row)) for row in x)
    assert dropped / total == pytest.approx(0.3, abs=0.08)


def _check_synonym_replace(x, out) -> None:
    groups = {word: set(group) for group in SYNONYMS for word in group}
    vocab = set(_data("text").tokenizer.vocab)
    replaced = 0
    for before, after in zip(x, out, strict=True):
        assert torch.equal(before == PAD_ID, after == PAD_ID)
        for old, new in zip(_words(before), _words(after), strict=True):
            if old != new:
                replaced += 1
                assert new in groups.get(old, set()), (old, new)
            elif groups.get(old, set()) & vocab - {old}:
                pytest.fail(f"{old!r} has a synonym in the vocabulary but was kept at rate 1")
    assert replaced > 0


def _sentences(words: list[str]) -> list[tuple[str, ...]]:
    out, current = [], []
    for word in words:
        current.append(word)
        if word in SENTENCE_ENDS:
            out.append(tuple(current))
            current = []
    return sorted([*out, tuple(current)] if current else out)


def _check_sentence_shuffle(x, out) -> None:
    _check_left_padded(out)
    for before, after in zip(x, out, strict=True):
        assert _sentences(_words(before)) == _sentences(_words(after)), "the same sentences, reordered"


def _check_color_jitter(x, out) -> None:
    """Each image is scaled about its mean by a factor in 1 ± 0.5 and shifted by at most ±0.5."""
    dims = tuple(range(1, x.dim()))
    mean, out_mean = x.mean(dims, keepdim=True), out.mean(dims, keepdim=True)
    factor = (out - out_mean).std(dims, keepdim=True) / (x - mean).std(dims, keepdim=True)
    torch.testing.assert_close(out - out_mean, factor * (x - mean), atol=1e-4, rtol=1e-4)
    shift = (out_mean - mean).flatten()
    assert ((factor > 0.5 - 1e-4) & (factor < 1.5 + 1e-4)).all() and (shift.abs() <= 0.5 + 1e-4).all()
    assert factor.std().item() > 0.1 and shift.std().item() > 0.1, "each image draws its own"


def _check_mixup(x, out) -> None:
    """Each row is λ·x_i + (1 − λ)·x_j for some row j, with one λ for the whole batch."""
    a, b = x.flatten(1), out.flatten(1)
    towards = a[None, :, :] - a[:, None, :]  # [i, j]: x_j − x_i
    moved = (b - a)[:, None, :]
    share = (moved * towards).sum(-1) / (towards * towards).sum(-1).clamp_min(1e-12)
    residual = (moved - share[..., None] * towards).norm(dim=-1)
    partner = residual.argmin(1)
    assert residual.gather(1, partner[:, None]).max().item() < 1e-3
    shares = share.gather(1, partner[:, None]).flatten()[partner != torch.arange(len(x))]
    assert len(shares) > len(x) // 2
    torch.testing.assert_close(shares, shares[:1].expand_as(shares), atol=1e-4, rtol=1e-4)


AUGMENT_CASES: dict[str, tuple[dict, Callable]] = {
    "hflip": ({}, _check_hflip),
    "vflip": ({}, _check_vflip),
    "gaussian_noise": ({"std": 0.5}, _check_noise(0.5)),
    "cutout": ({"size": 3, "count": 1}, _check_cutout),
    "jitter": ({"std": 0.2}, _check_noise(0.2)),
    "scaling": ({"std": 0.2}, _check_scaling),
    "time_shift": ({"max_shift": 2}, _check_time_shift),
    "random_crop": ({"padding": 2}, _check_random_crop),
    "rotate": ({"degrees": 90.0}, _check_center_kept),
    "scale": ({"range": [1.5, 2.0]}, _check_center_kept),
    "elastic": ({"alpha": 1.0, "sigma": 2.0}, _check_elastic),
    "smooth": ({"window": 3}, _check_smooth),
    "random_delete": ({"rate": 0.3}, _check_random_delete),
    "synonym_replace": ({"rate": 1.0}, _check_synonym_replace),
    "sentence_shuffle": ({}, _check_sentence_shuffle),
    "color_jitter": ({"brightness": 0.5, "contrast": 0.5}, _check_color_jitter),
    "mixup": ({"alpha": 1.0}, _check_mixup),
}


def test_augment_expectations_cover_the_registry():
    assert set(AUGMENT_CASES) == set(AUGMENTATIONS.names())


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_augmentation_applies_at_p1_and_not_at_p0(name):
    kwargs, check = AUGMENT_CASES[name]
    spec_class = AUGMENTATIONS.get(name)
    if not spec_class.available():
        pytest.skip(f"{name} needs {spec_class.needs}")
    assert spec_class.kinds, "every augmentation says which data it applies to"
    for kind in spec_class.kinds:
        data = _data(kind)
        x = data.x
        augmentation = spec_class(p=1.0, **kwargs)
        augmentation.prepare(data)
        torch.manual_seed(0)
        out, _ = augmentation.apply(x.clone(), data.y)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert not torch.equal(out, x), f"{name} at p=1 must change a {kind} batch"
        check(x, out)
        still = spec_class(p=0.0, **kwargs)
        still.prepare(data)
        assert torch.equal(still.apply(x.clone(), data.y)[0], x), f"{name} at p=0 must be the identity"


def test_augmentation_probability_picks_samples():
    x = _data("image").x
    torch.manual_seed(0)
    out = AUGMENTATIONS.get("hflip")(p=0.5)(x.clone())
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    assert (flipped | kept).all()
    assert 10 < flipped.sum().item() < 54


class _FirstBatch(Callback):
    def __init__(self) -> None:
        self.x: torch.Tensor | None = None

    def on_batch_start(self, state) -> None:
        if self.x is None:
            self.x = state.batch[0].clone()


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_training_batches_are_augmented(p):
    seen = _FirstBatch()
    document = spec_document(
        epochs=1,
        data={"source": IRIS, "batch_size": 32, "augment": [{"type": "gaussian_noise", "std": 0.5, "p": p}]},
    )
    result = train(document, callbacks=[seen])
    assert result.status == "succeeded"
    train_x = result.splits.train.x
    # each batch row is a training row (p=0) or a noisy copy of none (p=1)
    exact = (seen.x[:, None, :] == train_x[None, :, :]).all(-1).any(1).float().mean().item()
    assert exact == (1.0 if p == 0.0 else 0.0)


# ---------------------------------------------------------------------------------------------
# sources: every built-in set loads, inline arrays load with the kind their rank implies

BUILTIN_CASES: dict[str, tuple[str, tuple[int, ...], str, int | None]] = {
    # name: (task, x shape, kind, classes)
    "digits": ("classification", (1797, 1, 8, 8), "image", 10),
    "digits_flat": ("classification", (1797, 64), "tabular", 10),
    "iris": ("classification", (150, 4), "tabular", 3),
    "wine": ("classification", (178, 13), "tabular", 3),
    "breast_cancer": ("binary", (569, 30), "tabular", 2),
    "diabetes": ("regression", (442, 10), "tabular", None),
    "moons": ("binary", (300, 2), "tabular", 2),
    "spirals": ("classification", (300, 2), "tabular", 4),
    "sine_series": ("regression", (300, 12, 1), "sequence", None),
    "toy_text": ("binary", (300,), "text", 2),  # raw texts; token ids come with the vocabulary at planning
}


def test_builtin_expectations_cover_the_registry():
    assert set(BUILTIN_CASES) == set(BUILTIN_SETS.names())
    literal = SOURCES.get("builtin").model_fields["name"].annotation
    assert set(typing.get_args(literal)) == set(BUILTIN_SETS.names()), "the schema accepts every built-in set"


@pytest.mark.parametrize("name", BUILTIN_SETS.names())
def test_builtin_set_loads(name):
    task, shape, kind, classes = BUILTIN_CASES[name]
    wanted = {"n_samples": 300, "length": 12, **({"classes": 4} if task == "classification" else {})}
    wanted = {} if name in BUNDLED else wanted
    source = {"type": "builtin", "name": name, **{k: v for k, v in wanted.items() if k in set_parameters(name)}}
    spec = parse_spec({"task": task, "data": {"source": source}})
    data = spec.data.source.load(task=task, seed=0)
    assert data.kind == kind
    assert len(data.y) == len(data) == shape[0]
    if kind == "text":
        assert len(data.texts) == shape[0] and all(isinstance(t, str) and t for t in data.texts)
    else:
        assert tuple(data.x.shape) == shape
        assert data.x.dtype == torch.float32
    if classes is None:
        assert data.classes is None and data.y.dtype == torch.float32
    else:
        assert len(data.classes) == classes
        assert set(data.y.long().unique().tolist()) == set(range(classes))
        assert data.y.dtype == (torch.float32 if task == "binary" else torch.int64)


def test_generated_sets_follow_their_seed_and_noise():
    source = SOURCES.get("builtin")
    a = source(name="moons", n_samples=100, noise=0.1).load(task="binary", seed=0)
    b = source(name="moons", n_samples=100, noise=0.1).load(task="binary", seed=0)
    c = source(name="moons", n_samples=100, noise=0.1).load(task="binary", seed=1)
    d = source(name="moons", n_samples=100, noise=0.0).load(task="binary", seed=0)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    assert not torch.equal(a.x, d.x)


def test_sine_series_target_is_the_next_value():
    data = SOURCES.get("builtin")(name="sine_series", n_samples=50, noise=0.0, length=10).load(
        task="regression", seed=0
    )
    # a noiseless sine satisfies s[t+1] = 2cos(w) s[t] - s[t-1]; recover 2cos(w) from the window and extrapolate
    x = data.x[:, :, 0]
    k = (x[:, 2] + x[:, 0]) / x[:, 1]
    predicted = k * x[:, -1] - x[:, -2]
    ok = x[:, 1].abs() > 0.2
    torch.testing.assert_close(predicted[ok], data.y[ok], atol=1e-3, rtol=1e-3)


def _check_inline(inline, tmp_path) -> None:
    data = inline(x=[[1, 2], [3, 4], [5, 6], [7, 8]], y=["a", "b", "a", "b"]).load(task="classification", seed=0)
    assert tuple(data.x.shape) == (4, 2) and data.kind == "tabular"
    assert data.classes == ["a", "b"] and data.y.tolist() == [0, 1, 0, 1]
    data = inline(x=[1, 2, 3], y=[0.5, 1.5, 2.5]).load(task="regression", seed=0)
    assert tuple(data.x.shape) == (3, 1) and data.y.tolist() == [0.5, 1.5, 2.5]
    data = inline(x=[[[1], [2]], [[3], [4]]], y=[0, 1]).load(task="binary", seed=0)
    assert tuple(data.x.shape) == (2, 2, 1) and data.kind == "sequence"
    data = inline(x=[[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]], y=[0, 1]).load(task="binary", seed=0)
    assert tuple(data.x.shape) == (2, 1, 2, 2) and data.kind == "image"
    with pytest.raises(SpecInvalid) as info:
        inline(x=[[1, 2], [3]], y=[0, 1]).load(task="binary", seed=0)
    assert info.value.errors[0].pointer == "/data/source/x"
    with pytest.raises(SpecInvalid) as info:
        inline(x=[[1], [2]], y=[0.5, 1.0]).load(task="classification", seed=0)
    assert info.value.errors[0].pointer == "/data/source/y"


def _check_builtin(builtin, tmp_path) -> None:
    data = builtin(name="iris").load(task="classification", seed=0)
    assert len(data) == 150


def _write_csv(folder) -> None:
    rows = ["a,b,label", *[f"{i},{i % 4},{'yes' if i % 2 else 'no'}" for i in range(10)]]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")


def _check_file(file_source, tmp_path) -> None:
    _write_csv(tmp_path)
    spec = file_source(path="table.csv", target="label")
    with data_access(data_root=tmp_path):
        data = spec.load(task="binary", seed=0)
    assert tuple(data.x.shape) == (10, 2) and data.kind == "tabular"
    assert data.classes == ["no", "yes"] and data.y.tolist() == [float(i % 2) for i in range(10)]
    with pytest.raises(SpecInvalid) as info:
        spec.load(task="binary", seed=0)  # no data root allowed
    assert info.value.errors[0].pointer == "/data/source/path"
    with data_access(data_root=tmp_path / "inner"), pytest.raises(SpecInvalid) as info:
        file_source(path="../table.csv").load(task="binary", seed=0)
    assert "outside" in info.value.errors[0].message


def _check_dataset(dataset_source, tmp_path) -> None:
    _write_csv(tmp_path)
    uploads = {"ds_1": tmp_path / "table.csv"}
    with data_access(resolve_dataset=lambda id: uploads[id]):
        data = dataset_source(id="ds_1").load(task="binary", seed=0)
        assert tuple(data.x.shape) == (10, 2)
        with pytest.raises(SpecInvalid) as info:
            dataset_source(id="ds_2").load(task="binary", seed=0)
        assert info.value.errors[0].pointer == "/data/source/id"


SOURCE_CASES: dict[str, Callable] = {
    "builtin": _check_builtin,
    "inline": _check_inline,
    "file": _check_file,
    "dataset": _check_dataset,
}


def test_source_expectations_cover_the_registry():
    assert set(SOURCE_CASES) == set(SOURCES.names())


@pytest.mark.parametrize("name", SOURCES.names())
def test_source_loads(name, tmp_path):
    SOURCE_CASES[name](SOURCES.get(name), tmp_path)


def test_inline_data_trains():
    x = [[float(i), float(i % 3)] for i in range(40)]
    y = [int(i >= 20) for i in range(40)]
    document = spec_document(task="binary", data={"source": {"type": "inline", "x": x, "y": y}, "batch_size": 8})
    result = train(document)
    assert result.status == "succeeded"
    assert result.plan.outputs == 1
