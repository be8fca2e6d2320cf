"""The layer table's FLOPs, counted from the layers' shapes (no forward pass, no compiler stack),
agree with PyTorch's own FlopCounterMode on every layer type and the model heads around them."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.nn.build import layer_flops
from core.nn.models import MODELS, build_model
from tests.core.test_layers import LAYER_CASES, VOCAB_SIZES

# beyond LAYER_CASES: strides, even kernels, stacked and bidirectional cells, sequences into dense
EXTRA_CASES: dict[str, tuple[list[dict], tuple[int, ...]]] = {
    "conv_sequence_same_even": ([{"type": "conv", "filters": 3, "kernel": 4, "padding": "same"}], (9, 2)),
    "conv_no_bias_stride": ([{"type": "conv", "filters": 5, "kernel": 2, "stride": 3, "bias": False}], (2, 10, 7)),
    "dense_dropconnect_seq": ([{"type": "dense", "units": 4}, {"type": "dropconnect", "p": 0.5}], (3, 6)),
    "rnn_stacked_bidirectional": ([{"type": "rnn", "hidden": 4, "layers": 3, "bidirectional": True}], (5, 3)),
    "lstm_stacked_sequences": ([{"type": "lstm", "hidden": 6, "layers": 2, "return_sequences": True}], (4, 2)),
    "gru_bidirectional": ([{"type": "gru", "hidden": 3, "layers": 2, "bidirectional": True}], (7, 5)),
    "residual_widening_body": (
        [
            {
                "type": "residual",
                "layers": [
                    {"type": "conv", "filters": 6, "padding": "same"},
                    {"type": "activation"},
                    {"type": "conv", "filters": 3, "kernel": 1},
                ],
            },
            {"type": "residual", "layers": [{"type": "conv", "filters": 3, "padding": "same"}]},
        ],
        (3, 5, 5),
    ),
    "cnn_rnn": ([{"type": "conv", "filters": 2}, {"type": "to_sequence"}, {"type": "lstm", "hidden": 3}], (1, 6, 6)),
}
CASES = {name: (layers, shape) for name, (layers, shape, _, _) in LAYER_CASES.items()} | EXTRA_CASES


def reference_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        module(torch.empty((2, *shape), device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_flops_match_pytorch_flop_counter(name: str) -> None:
    layers, shape = CASES[name]
    spec = MODELS.get("cnn").model_validate({"type": "cnn", "layers": layers})
    with torch.device("meta"):
        model, rows = build_model(spec, shape, 3, count_flops=True, vocab_size=VOCAB_SIZES.get(name))
    top = [row for row in rows if "." not in row.name]
    assert sum(row.flops for row in top) > 0
    modules = dict(model.named_children())
    for row in top:
        module = modules.get(row.name)  # none for dropconnect (it changes the layer before)
        if module is not None and not isinstance(module, nn.Embedding):  # embedding: token ids, no products
            assert row.flops == reference_flops(module, shape), row.name
        shape = tuple(row.output_shape)


def test_dense_conv_and_lstm_flops_by_formula() -> None:
    dense, conv, lstm = nn.Linear(20, 5), nn.Conv2d(3, 4, 3, padding=1), nn.LSTM(3, 5, batch_first=True)
    assert layer_flops(dense, (20,), (5,), []) == 2 * 20 * 5
    assert layer_flops(conv, (3, 8, 8), (4, 8, 8), []) == 2 * (4 * 8 * 8) * (3 * 3 * 3)
    assert layer_flops(lstm, (6, 3), (5,), []) == 2 * 6 * 4 * 5 * (3 + 5)  # per step: 4 gates on input and hidden
