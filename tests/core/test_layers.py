"""Layers built from specs through ``build_model``: the layer table's shapes against the formulas
and against what the built modules actually produce, and each layer's behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import SpecInvalid
from core.nn.inits import INITS
from core.nn.layers import LAYERS
from core.nn.models import MODELS, build_model, initialise
from core.nn.modules import Residual
from tests.core.helpers import build_layers, top_level_shapes

# name: (layers given to a cnn model, input shape, index of the row under test, expected output shape)
LAYER_CASES: dict[str, tuple[list[dict], tuple[int, ...], int, tuple[int, ...]]] = {
    "conv": ([{"type": "conv", "filters": 4, "kernel": 3, "stride": 2, "padding": 1}], (1, 9, 9), 0, (4, 5, 5)),
    "max_pool": ([{"type": "max_pool", "kernel": 2}], (3, 9, 9), 0, (3, 4, 4)),
    "avg_pool": ([{"type": "avg_pool", "kernel": 3, "stride": 2, "padding": 1}], (3, 9, 9), 0, (3, 5, 5)),
    "fractional_max_pool": ([{"type": "fractional_max_pool", "ratio": 0.5}], (2, 10, 10), 0, (2, 5, 5)),
    "batch_norm": ([{"type": "batch_norm"}], (3, 4, 4), 0, (3, 4, 4)),
    "dropout": ([{"type": "dropout", "p": 0.3}], (5,), 0, (5,)),
    "dropconnect": ([{"type": "dense", "units": 6}, {"type": "dropconnect", "p": 0.3}], (5,), 1, (6,)),
    "activation": ([{"type": "activation", "fn": {"type": "maxout", "pieces": 2}}], (8,), 0, (4,)),
    "flatten": ([{"type": "flatten"}], (2, 3, 4), 0, (24,)),
    "dense": ([{"type": "dense", "units": 7}], (6, 5), 0, (6, 7)),
    "embedding": ([{"type": "embedding", "dim": 8}, {"type": "gru", "hidden": 4}], (12,), 0, (12, 8)),
    "rnn": ([{"type": "rnn", "hidden": 5}], (6, 3), 0, (5,)),
    "lstm": ([{"type": "lstm", "hidden": 5, "bidirectional": True}], (6, 3), 0, (10,)),
    "gru": ([{"type": "gru", "hidden": 5, "return_sequences": True}], (6, 3), 0, (6, 5)),
    "to_sequence": ([{"type": "to_sequence"}], (2, 3, 4), 0, (4, 6)),
    "residual": (
        [{"type": "residual", "layers": [{"type": "conv", "filters": 3, "padding": "same"}, {"type": "activation"}]}],
        (3, 6, 6),
        0,
        (3, 6, 6),
    ),
}


VOCAB_SIZES = {"embedding": 50}  # layers that take token ids


def test_layer_expectations_cover_the_registry():
    assert set(LAYER_CASES) == set(LAYERS.names())


@pytest.mark.parametrize("name", LAYERS.names())
def test_layer_builds_with_the_expected_output_shape(name):
    layers, input_shape, index, expected = LAYER_CASES[name]
    vocab = VOCAB_SIZES.get(name)
    model, rows = build_layers(layers, input_shape, outputs=3, vocab_size=vocab)
    row = rows[index]
    assert row.type == name
    assert row.pointer == f"/model/layers/{index}"
    assert tuple(row.output_shape) == expected
    actual = top_level_shapes(model, input_shape, vocab_size=vocab)
    for top in rows:
        if top.name in actual:  # the table agrees with what the modules produce
            assert actual[top.name] == top.output_shape, top.name
    assert rows[-1].output_shape == [3]
    if name in ("conv", "dense", "batch_norm", "rnn", "lstm", "gru", "embedding"):
        assert row.params == sum(p.numel() for p in dict(model.named_children())[row.name].parameters()) > 0


def test_layer_table_comes_from_validation_too():
    from core.engine.plan import validate_document

    report = validate_document(
        {
            "data": {"source": {"type": "builtin", "name": "digits"}},
            "model": {"type": "cnn", "layers": [{"type": "conv", "filters": 4, "padding": "same"}]},
        }
    )
    assert report["valid"], report
    assert report["layers"][0]["output_shape"] == [4, 8, 8]
    assert report["layers"][0]["params"] == 4 * 9 + 4
    assert report["layers"][0]["flops"] > 0
    assert report["params"] == 40 + (4 * 64 * 10 + 10)


# --- conv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize(
    ("padding", "grow"),
    [("valid", lambda k: -(k - 1)), ("same", lambda k: 0), ("full", lambda k: k - 1), (1, lambda k: 2 - (k - 1))],
)
@pytest.mark.parametrize("input_shape", [(2, 11, 11), (11, 2)], ids=["image", "sequence"])
def test_conv_padding(kernel, padding, grow, input_shape):
    layers = [{"type": "conv", "filters": 4, "kernel": kernel, "padding": padding}]
    model, rows = build_layers(layers, input_shape)
    size = 11 + grow(kernel)
    expected = [4, size, size] if len(input_shape) == 3 else [size, 4]
    assert rows[0].output_shape == expected
    assert top_level_shapes(model, input_shape)[rows[0].name] == expected


def test_conv_output_size_formula_with_stride():
    for n, k, s, p in [(28, 5, 1, 0), (28, 3, 2, 1), (32, 7, 3, 2), (10, 4, 4, 0)]:
        _, rows = build_layers([{"type": "conv", "filters": 2, "kernel": k, "stride": s, "padding": p}], (1, n, n))
        expected = (n + 2 * p - k) // s + 1
        assert rows[0].output_shape == [2, expected, expected], (n, k, s, p)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_with_an_even_kernel():
    model, rows = build_layers([{"type": "conv", "filters": 2, "kernel": 4, "padding": "same"}], (1, 9, 9))
    assert rows[0].output_shape == [2, 9, 9]
    assert top_level_shapes(model, (1, 9, 9))[rows[0].name] == [2, 9, 9]


def test_a_conv_that_shrinks_below_one_pixel_names_the_layer():
    layers = [{"type": "conv", "filters": 2, "kernel": 3}] * 2 + [{"type": "conv", "filters": 2, "kernel": 5}]
    with pytest.raises(SpecInvalid) as info:
        build_layers(layers, (1, 8, 8))
    (error,) = info.value.errors
    assert error.pointer == "/model/layers/2"
    assert "≤ 0" in error.message


# --- pooling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.7, 0.8])
@pytest.mark.parametrize("size", [9, 10, 16])
def test_fractional_max_pool_size_is_int_n_times_ratio(ratio, size):
    layers = [{"type": "fractional_max_pool", "ratio": ratio}]
    model, rows = build_layers(layers, (2, size, size))
    expected = int(size * ratio)
    assert rows[0].output_shape == [2, expected, expected]
    assert top_level_shapes(model, (2, size, size))[rows[0].name] == [2, expected, expected]


def test_fractional_max_pool_regions_are_random_in_training():
    model, _ = build_layers([{"type": "fractional_max_pool", "ratio": 0.7}], (1, 10, 10))
    pool = model[0]
    pool.train()
    x = torch.randn(1, 1, 10, 10)
    outputs = {tuple(pool(x).flatten().tolist()) for _ in range(10)}
    assert len(outputs) > 1


def test_max_and_avg_pool_values():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    max_model, _ = build_layers([{"type": "max_pool", "kernel": 2}], (1, 4, 4))
    avg_model, _ = build_layers([{"type": "avg_pool", "kernel": 2}], (1, 4, 4))
    assert max_model[0](x).flatten().tolist() == [5.0, 7.0, 13.0, 15.0]
    assert avg_model[0](x).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


# --- dropout, dropconnect, stochastic depth ---------------------------------------------------


def test_inverted_dropout_scales_kept_units_in_training_and_is_identity_in_eval():
    p = 0.25
    model, _ = build_layers([{"type": "dropout", "p": p}], (4000,))
    dropout = model[0]
    x = torch.ones(2, 4000)
    dropout.train()
    torch.manual_seed(0)
    out = dropout(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)  # expectation preserved
    dropout.eval()
    assert torch.equal(dropout(x), x)


def test_dropconnect_drops_weights_in_training_and_is_identity_in_eval():
    p = 0.5
    torch.manual_seed(0)
    model, rows = build_layers([{"type": "dense", "units": 40}, {"type": "dropconnect", "p": p}], (30,))
    assert [row.type for row in rows[:2]] == ["dense", "dropconnect"]
    dense = model[0]
    assert isinstance(dense, nn.Linear)
    original = dense.parametrizations.weight.original.detach().clone()
    x = torch.randn(8, 30)

    model.eval()
    assert torch.equal(dense.weight, original)
    torch.testing.assert_close(dense(x), x @ original.T + dense.bias)

    model.train()
    draws = torch.stack([dense.weight.detach() for _ in range(400)])
    kept = draws != 0
    torch.testing.assert_close(draws[kept], (original / (1 - p)).expand_as(draws)[kept])
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.02)
    torch.testing.assert_close(draws.mean(0), original, atol=0.15 * original.abs().max().item(), rtol=0)
    assert not torch.equal(dense(x), dense(x)), "a new mask every forward pass"


def test_dropconnect_must_follow_a_weighted_layer():
    with pytest.raises(SpecInvalid) as info:
        build_layers([{"type": "flatten"}, {"type": "dropconnect"}], (4,))
    assert info.value.errors[0].pointer == "/model/layers/1"


def _residual_block(**options) -> tuple[nn.Sequential, Residual]:
    body = [
        {"type": "conv", "filters": 3, "padding": "same"},
        {"type": "activation"},
        {"type": "conv", "filters": 3, "padding": "same"},
    ]
    model, _ = build_layers([{"type": "residual", "layers": body, **options}], (3, 6, 6))
    block = model[0]
    assert isinstance(block, Residual)
    return model, block


def test_stochastic_depth_drops_whole_branches_in_training_and_is_identity_at_eval():
    torch.manual_seed(0)
    model, block = _residual_block(drop_path=0.5)
    x = torch.randn(64, 3, 6, 6)
    with torch.no_grad():
        branch = block.body(x)
        model.eval()
        torch.testing.assert_close(block(x), x + branch)
        model.train()
        out = block(x)
    dropped = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert 10 < dropped.sum().item() < 54, "about half the samples skip the branch"
    torch.testing.assert_close(out[~dropped], (x + branch / 0.5)[~dropped])


@pytest.mark.parametrize("init", ["kaiming", "xavier_normal", "default"])
def test_zero_init_last_makes_the_residual_block_the_identity(init):
    torch.manual_seed(0)
    model, block = _residual_block(zero_init_last=True)
    initialise(model, INITS.get(init)())
    x = torch.randn(4, 3, 6, 6)
    model.eval()
    with torch.no_grad():
        assert torch.equal(block(x), x)
        first_conv = block.body[0]
        assert first_conv.weight.abs().sum() > 0, "only the last layer is zeroed"

    other, other_block = _residual_block(zero_init_last=False)
    initialise(other, INITS.get(init)())
    with torch.no_grad():
        assert not torch.allclose(other_block(x), x)


def test_residual_layers_must_keep_the_shape():
    with pytest.raises(SpecInvalid) as info:
        build_layers([{"type": "residual", "layers": [{"type": "conv", "filters": 3}]}], (3, 6, 6))
    assert info.value.errors[0].pointer == "/model/layers/0"


# --- recurrent ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_output_shapes(cell, bidirectional, return_sequences):
    steps, features, hidden = 7, 3, 5
    layer = {
        "type": cell,
        "hidden": hidden,
        "layers": 2,
        "bidirectional": bidirectional,
        "return_sequences": return_sequences,
    }
    model, rows = build_layers([layer], (steps, features))
    width = hidden * (2 if bidirectional else 1)
    expected = [steps, width] if return_sequences else [width]
    assert rows[0].output_shape == expected
    assert top_level_shapes(model, (steps, features))[rows[0].name] == expected
    rnn = model[0].rnn
    assert type(rnn) is {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    assert rnn.num_layers == 2 and rnn.hidden_size == hidden and rnn.bidirectional == bidirectional


def test_recurrent_last_state_is_the_last_step_of_the_sequence():
    torch.manual_seed(0)
    last, _ = build_layers([{"type": "gru", "hidden": 4}], (6, 2))
    recurrent = last[0]
    x = torch.randn(3, 6, 2)
    recurrent.return_sequences = True
    sequence = recurrent(x)
    recurrent.return_sequences = False
    torch.testing.assert_close(recurrent(x), sequence[:, -1, :])


def test_recurrent_layers_need_a_sequence():
    with pytest.raises(SpecInvalid) as info:
        build_layers([{"type": "lstm"}], (3, 4, 4))
    assert info.value.errors[0].pointer == "/model/layers/0"


# --- activations as layers, models ----------------------------------------------------------


def test_activation_layer_uses_the_model_default_or_its_own():
    model, _ = build_layers([{"type": "activation"}], (4,), activation="tanh")
    assert isinstance(model[0], nn.Tanh)
    model, _ = build_layers([{"type": "activation", "fn": {"type": "elu"}}], (4,), activation="tanh")
    assert isinstance(model[0], nn.ELU)


def test_maxout_on_images_groups_channels():
    model, rows = build_layers([{"type": "activation", "fn": {"type": "maxout", "pieces": 2}}], (4, 3, 3))
    assert rows[0].output_shape == [2, 3, 3]
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(model[0](x), x.reshape(2, 2, 2, 3, 3).amax(2))


def test_mlp_with_maxout_widens_the_dense_layer_by_the_pieces():
    spec = MODELS.get("mlp").model_validate({"type": "mlp", "hidden": [16], "activation": {"type": "maxout"}})
    _, rows = build_model(spec, (10,), 3)
    assert [(r.type, r.output_shape) for r in rows[:2]] == [("dense", [32]), ("activation", [16])]


def test_mlp_layer_order_and_pointers():
    spec = MODELS.get("mlp").model_validate(
        {"type": "mlp", "hidden": [8, 4], "dropout": 0.1, "dropconnect": 0.2, "batch_norm": True}
    )
    _, rows = build_model(spec, (1, 3, 3), 2)
    assert [r.type for r in rows] == [
        "flatten",
        *["dense", "dropconnect", "batch_norm", "activation", "dropout"] * 2,
        "dense",
    ]
    assert rows[1].pointer == "/model/hidden/0" and rows[6].pointer == "/model/hidden/1"
    assert rows[-1].output_shape == [2]


def test_batch_norm_normalises_per_channel_in_training():
    model, _ = build_layers([{"type": "batch_norm"}], (3, 4, 4))
    bn = model[0]
    bn.train()
    x = torch.randn(16, 3, 4, 4) * 5 + 2
    out = bn(x)
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_dense_params_and_flops_in_the_table():
    spec = MODELS.get("linear")()
    with torch.device("meta"):
        _, rows = build_model(spec, (20,), 5, count_flops=True)
    assert rows[-1].params == 20 * 5 + 5
    assert rows[-1].flops == 2 * 20 * 5  # a multiply and an add per weight, per sample


@pytest.mark.parametrize("init", INITS.names())
def test_init_reaches_layers_wrapped_by_dropconnect(init):
    """A dense layer followed by dropconnect is initialised exactly like the same layer without it."""

    def first_weight(dropconnect: float) -> torch.Tensor:
        spec = MODELS.get("mlp").model_validate(
            {"type": "mlp", "hidden": [64], "dropout": 0.0, "dropconnect": dropconnect, "init": {"type": init}}
        )
        torch.manual_seed(0)
        model, _ = build_model(spec, (32,), 4)
        torch.manual_seed(1)  # the same random stream for the initialisation in both models
        initialise(model, spec.init)
        model.eval()
        return model[0].weight.detach().clone()  # eval: the parametrized weight is the stored one

    torch.testing.assert_close(first_weight(0.5), first_weight(0.0), rtol=0, atol=0)


def test_embedding_maps_padding_to_zero_and_needs_token_ids():
    model, _ = build_layers([{"type": "embedding", "dim": 6}, {"type": "flatten"}], (5,), vocab_size=20)
    embedding = model[0]
    assert embedding.num_embeddings == 20 and embedding.embedding_dim == 6
    ids = torch.tensor([[0, 0, 3, 4, 19]])
    out = embedding(ids.float())  # ids of any dtype
    assert torch.equal(out[0, :2], torch.zeros(2, 6))
    torch.testing.assert_close(out[0, 2], embedding.weight[3])
    with pytest.raises(SpecInvalid) as info:
        build_layers([{"type": "embedding"}], (5,))  # no vocabulary: not text data
    assert info.value.errors[0].pointer == "/model/layers/0"
