"""What the notes tell a learner to watch, measured every N steps without a host sync:
per-layer activation mean / std / saturated / dead fractions, per-weight gradient norms and
update/weight ratios, and the initial loss against ln(C)."""

import math

import torch
from torch import nn

from core.engine.events import Callback, State
from core.engine.trainer import weight_tensors
from core.nn.activations import ACTIVATIONS
from core.task import fit_output

SATURATION_MARGIN = 0.02  # within 2% of the output range from an asymptote counts as saturated


def _activation_traits() -> dict[type[nn.Module], tuple[tuple[float, float] | None, bool]]:
    """Module class → (asymptotes, is a rectifier), read off the activation registry."""
    traits = {}
    for name in ACTIVATIONS.names():
        spec_class = ACTIVATIONS.get(name)
        traits[type(spec_class().build())] = (spec_class.bounds, spec_class.rectifier)
    return traits


class InitialLoss(Callback):
    """The loss before any update, on a first batch: ≈ ln C for a well-initialised classifier, and
    the level a learning rate that is too high overshoots. Recorded for every run (one forward
    pass, no RNG drawn), with ln C for classifiers (``init_loss_expected``)."""

    def on_fit_start(self, state: State) -> None:
        if state.batch is None or state.step > 0:  # a resumed run measured it when it started
            return
        x, y = state.batch
        state.model.eval()
        with torch.no_grad(), state.autocast():
            output = state.model(x)
            state.record("init_loss", state.loss_fn(fit_output(output, y.dim()), y))
        if state.spec.task == "classification":
            state.record("init_loss_expected", math.log(output.shape[-1]))
        elif state.spec.task == "binary":
            state.record("init_loss_expected", math.log(2.0))


class Diagnostics(Callback):
    """Per-layer activation statistics, gradient norms and update ratios every ``every_n_steps``
    steps (step 0's are the ones at initialisation)."""

    def __init__(self, *, every_n_steps: int, activations: bool, gradients: bool) -> None:
        self.every = every_n_steps
        self.activations, self.gradients = activations, gradients
        self.traits = _activation_traits()
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.named: list[tuple[str, nn.Parameter]] = []
        self.before_step: list[torch.Tensor] = []
        self.measuring = False
        self.keep: torch.Tensor | None = None  # whether this step's gradient points are kept (fp16)

    def _watch_activations(self, state: State) -> None:
        for name, module in state.model.named_modules():
            traits = self.traits.get(type(module))
            if traits is not None:
                self.hooks.append(module.register_forward_hook(self._make_hook(state, name, *traits)))

    def _make_hook(self, state: State, layer: str, bounds: tuple[float, float] | None, rectifier: bool):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            y = output.detach().float()
            state.record(f"act/{layer}/mean", y.mean())
            state.record(f"act/{layer}/std", y.std())
            if bounds is not None:
                margin = SATURATION_MARGIN * (bounds[1] - bounds[0])
                state.record(
                    f"act/{layer}/saturated", ((y < bounds[0] + margin) | (y > bounds[1] - margin)).float().mean()
                )
            if rectifier:
                state.record(f"act/{layer}/dead", (y.amax(dim=0) <= 0).float().mean())

        return hook

    def _unwatch(self) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks = []

    def observes(self, step: int) -> bool:
        return (self.activations or self.gradients) and step % self.every == 0

    def on_batch_start(self, state: State) -> None:
        self.measuring = state.step % self.every == 0
        if self.measuring and self.activations:
            self._watch_activations(state)

    def on_after_backward(self, state: State) -> None:
        self._unwatch()
        if not (self.measuring and self.gradients):
            return
        named = [(n, p) for n, p in weight_tensors(state.model) if p.grad is not None]
        norms = torch._foreach_norm([p.grad for _, p in named])
        # fp16: a non-finite gradient is the GradScaler's overflow, whose step it skips, not the
        # model's gradient: that step's gradients and updates are not recorded
        scaled = state.spec.precision == "fp16" and bool(norms)
        self.keep = torch.isfinite(torch.stack(norms)).all() if scaled else None
        for (name, _), norm in zip(named, norms, strict=True):
            state.record(f"grad_norm/{name}", norm, keep=self.keep)
        self.before_step = [p.detach().clone() for _, p in named]
        self.named = named

    def on_step_end(self, state: State) -> None:
        if not self.before_step:
            return
        with torch.no_grad():
            updates = torch._foreach_norm(torch._foreach_sub([p.detach() for _, p in self.named], self.before_step))
            weights = torch._foreach_norm(self.before_step)
        for (name, _), update, weight in zip(self.named, updates, weights, strict=True):
            state.record(f"update_ratio/{name}", update / weight.clamp_min(1e-12), keep=self.keep)
        self.before_step = []
