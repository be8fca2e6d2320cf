"""Augmentations (image, series, text): each changes a batch at p=1, leaves it alone at p=0, keeps
every sample in its place (labels stay aligned), and never touches validation or test data."""

from __future__ import annotations

import itertools

import pytest
import torch

from core.data.augment import AUGMENTATIONS
from core.data.text import PAD_ID
from core.engine.events import Callback
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import prepare_splits
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS, QUIET, spec_document, train

PARAMS = {"rotate": {"degrees": 30.0}, "scale": {"range": (0.7, 0.9)}, "elastic": {"alpha": 2.0, "sigma": 1.5}}
TOY_TEXT = {"type": "builtin", "name": "toy_text", "n_samples": 200}


@pytest.fixture(scope="module")
def text_data():
    spec = parse_spec({"task": "binary", "data": {"source": TOY_TEXT}})
    return plan_experiment(spec).data


def batch(kind: str, text_data) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "text":
        return text_data.x[:64].clone()
    shape = {"image": (64, 1, 8, 8), "sequence": (64, 16, 2), "tabular": (64, 5)}[kind]
    return torch.rand(shape, generator=g) + 1.0  # no zeros: cutout's zeros are visible


def make(name: str, p: float, text_data):
    augmentation = AUGMENTATIONS.get(name)(p=p, **PARAMS.get(name, {}))
    augmentation.prepare(text_data)
    return augmentation


def augmented(augmentation, x: torch.Tensor) -> torch.Tensor:
    """The batch as the trainer augments it (with float targets, which mixup mixes along)."""
    return augmentation.apply(x, torch.zeros(len(x), device=x.device))[0]


def cases() -> list[tuple[str, str]]:
    return [(name, kind) for name in AUGMENTATIONS.names() for kind in AUGMENTATIONS.get(name).kinds]


@pytest.mark.parametrize(("name", "kind"), cases())
def test_augmentation_changes_a_batch_at_p1_and_not_at_p0(name, kind, text_data):
    if AUGMENTATIONS.get(name).needs:
        pytest.importorskip(AUGMENTATIONS.get(name).needs)
    x = batch(kind, text_data)
    torch.manual_seed(0)
    out = augmented(make(name, 1.0, text_data), x.clone())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x), f"{name} at p=1 must change a {kind} batch"
    assert torch.equal(augmented(make(name, 0.0, text_data), x.clone()), x), f"{name} at p=0 must be the identity"


# mixup moves every sample towards another by design (tests/core/test_data_mixup_jitter.py checks it)
@pytest.mark.parametrize(("name", "kind"), [c for c in cases() if c[1] != "text" and c[0] != "mixup"])
def test_augmentation_keeps_each_sample_in_its_place(name, kind, text_data):
    """Sample i is a constant 2^i: after augmenting, its level is still ≈ 2^i (no sample moved)."""
    if AUGMENTATIONS.get(name).needs:
        pytest.importorskip(AUGMENTATIONS.get(name).needs)
    levels = 2.0 ** torch.arange(8, dtype=torch.float32)
    shape = {"image": (1, 8, 8), "sequence": (16, 2), "tabular": (5,)}[kind]
    x = levels.view(-1, *[1] * len(shape)).expand(8, *shape).contiguous()
    torch.manual_seed(0)
    out = make(name, 1.0, text_data)(x)
    level = out.flatten(1).amax(1) if kind == "image" else out.flatten(1).median(1).values
    ratio = level / levels
    assert ((ratio > 0.5) & (ratio < 1.5)).all(), (name, ratio)


def test_augmentation_picks_samples_with_probability_p(text_data):
    x = batch("image", text_data)
    torch.manual_seed(0)
    out = make("random_crop", 0.5, text_data)(x)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.3 < changed < 0.7


# --- text augmentations operate on token ids, batched ------------------------------------------------


def tokens(row: torch.Tensor) -> list[int]:
    return [t for t in row.tolist() if t != PAD_ID]


def test_random_delete_keeps_a_left_padded_subsequence(text_data):
    x = batch("text", text_data)
    torch.manual_seed(0)
    out = make("random_delete", 1.0, text_data)(x)
    for before, after in zip(x, out, strict=True):
        kept, original = tokens(after), tokens(before)
        assert 1 <= len(kept) <= len(original)
        it = iter(original)
        assert all(token in it for token in kept), "kept tokens keep their order"
        assert (after[: len(after) - len(kept)] == PAD_ID).all(), "padding stays in front"


def test_synonym_replace_maps_words_to_their_synonyms(text_data):
    tokenizer = text_data.tokenizer
    x = batch("text", text_data)
    torch.manual_seed(0)
    out = make("synonym_replace", 1.0, text_data)(x)
    table = tokenizer.synonym_table()
    changed = out != x
    assert changed.any()
    for a, b in zip(x[changed].tolist(), out[changed].tolist(), strict=True):
        assert b in table[a].tolist() and b != a
    assert ((x == PAD_ID) == (out == PAD_ID)).all()
    good = tokenizer.index["good"]
    assert set(table[good].tolist()) <= {tokenizer.index[w] for w in ("nice", "fine", "decent") if w in tokenizer.index}


def sentences(row: list[int], ends: set[int]) -> list[tuple[int, ...]]:
    """The id runs that end at a sentence mark (the last may be cut off by the length limit)."""
    out, current = [], []
    for token in row:
        current.append(token)
        if token in ends:
            out.append(tuple(current))
            current = []
    return out + ([tuple(current)] if current else [])


def test_sentence_shuffle_permutes_whole_sentences(text_data):
    ends = set(text_data.tokenizer.sentence_end_ids())
    x = batch("text", text_data)
    torch.manual_seed(0)
    out = make("sentence_shuffle", 1.0, text_data)(x)
    reordered = 0
    for before, after in zip(x, out, strict=True):
        original = sentences(tokens(before), ends)
        orders = [sum(order, ()) for order in itertools.permutations(original)]
        assert tuple(tokens(after)) in orders, "the same sentences, each kept whole, in some order"
        reordered += tuple(tokens(after)) != orders[0]
    assert reordered > 5
    assert ((x == PAD_ID) == (out == PAD_ID)).all()


# --- in training: training split only, labels aligned ------------------------------------------------


class FirstBatches(Callback):
    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_batch_start(self, state) -> None:
        x, y = state.batch
        self.batches.append((x.clone(), y.clone()))


def test_training_batches_keep_their_labels():
    """Each image is a constant (label + 1) · 10: after flips, crops, cutout and rotation at p=1,
    every training batch row still carries its own label's level."""
    pytest.importorskip("kornia")
    labels = [i % 3 for i in range(60)]
    images = [[[[(label + 1) * 10.0] * 8] * 8] for label in labels]
    augment = [{"type": t, "p": 1.0} for t in ("hflip", "random_crop", "cutout", "rotate")]
    document = spec_document(
        data={
            "source": {"type": "inline", "x": images, "y": labels},
            "batch_size": 16,
            "preprocess": [],
            "augment": augment,
        },
        model={"type": "cnn", "layers": [{"type": "conv", "filters": 2}]},
    )
    seen = FirstBatches()
    assert train(document, callbacks=[seen]).status == "succeeded"
    for x, y in seen.batches:
        torch.testing.assert_close(x.flatten(1).amax(1), (y.float() + 1) * 10)
        level = ((y.float() + 1) * 10).view(-1, 1)
        assert (x.flatten(1) != level).any(1).all(), "every row was augmented"


def test_validation_and_test_data_are_never_augmented():
    pytest.importorskip("kornia")
    augment = [
        {"type": "hflip", "p": 1.0},
        {"type": "random_crop", "p": 1.0},
        {"type": "cutout", "p": 1.0},
        {"type": "rotate", "p": 1.0},
        {"type": "gaussian_noise", "std": 5.0, "p": 1.0},
    ]
    document = spec_document(epochs=1, data={"source": DIGITS, "augment": augment})
    spec = parse_spec(document)
    plan = plan_experiment(spec)
    result = train(document, plan=plan)
    clean = prepare_splits(spec, plan.data)
    assert torch.equal(result.splits.validation.x, clean.validation.x)
    assert torch.equal(result.splits.test.x, clean.test.x)
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        model = result.model.eval()
        val_loss = loss(model(clean.validation.x), clean.validation.y).item()
        test_loss = loss(model(clean.test.x), clean.test.y).item()
    assert result.final["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert result.final["test_loss"] == pytest.approx(test_loss, rel=1e-4)


def test_text_augmentations_train_end_to_end():
    augment = [{"type": t, "p": 0.5} for t in ("synonym_replace", "random_delete", "sentence_shuffle")]
    document = {
        "task": "binary",
        "epochs": 1,
        "data": {"source": TOY_TEXT, "batch_size": 32, "augment": augment},
        "model": {"type": "rnn", "hidden": 8},
        "regularization": {"early_stopping": None},
        "diagnostics": QUIET,
    }
    assert train(document).status == "succeeded"


# --- an augmentation that does not fit the data is a validation error --------------------------------


@pytest.mark.parametrize(
    ("source", "augment", "kind"),
    [
        (DIGITS, "synonym_replace", "image"),
        (DIGITS, "smooth", "image"),
        (TOY_TEXT, "rotate", "text"),
        (TOY_TEXT, "gaussian_noise", "text"),
        ({"type": "builtin", "name": "iris"}, "random_crop", "tabular"),
        ({"type": "builtin", "name": "sine_series", "n_samples": 50}, "sentence_shuffle", "sequence"),
    ],
)
def test_an_augmentation_of_another_kind_is_refused(source, augment, kind):
    task = "binary" if source is TOY_TEXT else "regression" if source["name"] == "sine_series" else "classification"
    document = {"task": task, "data": {"source": source, "augment": [{"type": "hflip"}, {"type": augment}]}}
    if kind != "image":
        document["data"]["augment"] = [{"type": augment}]
    report = validate_document(document)
    assert not report["valid"]
    error = report["errors"][-1]
    assert error["pointer"] == f"/data/augment/{len(document['data']['augment']) - 1}/type"
    assert f"does not apply to {kind} data" in error["message"]


def test_scale_range_is_checked_where_it_is_written():
    report = validate_document({"data": {"source": DIGITS, "augment": [{"type": "scale", "range": [1.2, 0.8]}]}})
    assert report["errors"][0]["pointer"] == "/data/augment/0/range"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "kind"), cases())
def test_augmentation_runs_on_the_training_device(name, kind, text_data):
    if AUGMENTATIONS.get(name).needs:
        pytest.importorskip(AUGMENTATIONS.get(name).needs)
    x = batch(kind, text_data).cuda()
    out = augmented(make(name, 1.0, text_data), x)
    assert out.device == x.device and not torch.equal(out, x)
