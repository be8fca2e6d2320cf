"""Small nn.Modules the layer registry needs that PyTorch does not ship as such."""

from __future__ import annotations

import torch
from torch import nn


class ChannelsLast(nn.Module):
    """Runs a channels-first module on (N, T, F) sequences: transposes to (N, F, T) and back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


class DropConnectMask(nn.Module):
    """A weight parametrization: in training, drops each weight with probability p and
    scales the rest by 1/(1-p) (inverted, so evaluation uses the weights unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return weight
        keep = torch.empty_like(weight).bernoulli_(1.0 - self.p)
        return weight * keep / (1.0 - self.p)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole branch for a random subset of samples, scale the rest."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Residual(nn.Module):
    """x + drop_path(body(x)); ``zero_init_last`` zeroes the body's last weighted layer at init."""

    def __init__(self, body: nn.Module, drop_path: float, zero_init_last: bool) -> None:
        super().__init__()
        self.body = body
        self.drop_path = drop_path
        self.zero_init_last = zero_init_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.body(x), self.drop_path, self.training)

    def reset_last_layer(self) -> None:
        """Zero the last module in the body that has a weight (the notes: 'the 2nd conv → 0')."""
        weighted = [m for m in self.body.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
        if weighted:
            with torch.no_grad():
                last = weighted[-1]
                nn.init.zeros_(last.weight)
                if getattr(last, "bias", None) is not None:
                    nn.init.zeros_(last.bias)


class Recurrent(nn.Module):
    """batch-first RNN / LSTM / GRU returning every step's output or the last hidden state."""

    def __init__(self, rnn: nn.RNNBase, return_sequences: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.return_sequences = return_sequences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, hidden = self.rnn(x)
        if self.return_sequences:
            return output
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden
        directions = 2 if self.rnn.bidirectional else 1
        return h_n[-directions:].transpose(0, 1).reshape(x.shape[0], -1)


class ToSequence(nn.Module):
    """(N, C, H, W) feature maps → (N, W, C·H) sequences along the last spatial axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            n, c, h, w = x.shape
            return x.permute(0, 3, 1, 2).reshape(n, w, c * h)
        return x
