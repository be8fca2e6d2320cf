"""One training step: forward and loss under the run's autocast, backward (scaled for fp16), the
callbacks' look at the gradients, the optimizer's step. Captured with torch.compile as ``Capture``
says, except on the steps a callback observes (forward hooks, gradients), which run the eager
module (the same parameters). If compiling raises, the run goes on eagerly from the same state,
the reason kept for its summary. Nothing here reads a value back to the host, except fp16's
GradScaler before a non-fused optimizer's step (its inf check)."""

import logging
from collections.abc import Callable
from typing import Any

import torch

from core.engine.capture import Capture, channels_last
from core.engine.precision import MixedPrecision
from core.task import fit_output

log = logging.getLogger("trainyard.engine")
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # (to backward from, the loss, right answers)


def _describe(exc: BaseException) -> str:
    """The error in a line: its type, and the first line of what its root cause says (torch.compile
    wraps a backend's error in one whose own message is only where it came from)."""
    root = exc
    while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
        root = inner
    said = (str(root).strip().splitlines() or [""])[0]
    kind = type(exc).__name__ if root is exc else f"{type(exc).__name__} from {type(root).__name__}"
    return f"{kind}: {said}"


class TrainStep:
    """``step(x, y, observed=..., after_backward=...)`` → (loss, right answers or None), on the device.
    ``penalty`` is added to the loss before backward; ``score`` counts right answers."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: torch.nn.Module,
        precision: MixedPrecision,
        capture: Capture,
        penalty: Callable[[], torch.Tensor | float] | None = None,
        score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.precision, self.penalty, self.score = precision, penalty, score
        # a CNN on CUDA: its weights were put in channels_last before DDP wrapped the model
        # (run_experiment); the step converts each batch
        self.channels_last = channels_last(model, precision.device)
        self.compiled, self.eager_reason = capture.compiled, capture.reason
        self.steps = 0
        self.backward_ran: set[tuple[Any, ...]] = set()  # the batch shapes whose compiled backward ran
        self.mark_steps = capture.mode == "reduce-overhead"  # CUDA graphs: each step's outputs are new
        self.compiled_forward: Callable[..., Outputs] | None = None
        self.compiled_optimizer: Callable[[], None] | None = None
        if capture.compiled:
            # Dynamo keeps compiled code per function across runs, each run's guarded on its own
            # model and optimizer, and past 8 entries it silently stops compiling that function. A
            # process trains one run at a time (the worker's solo pool, the CLI), so each compiled
            # run starts from an empty cache (compiled kernels stay in inductor's cache on disk).
            torch.compiler.reset()
            # fullgraph: a graph break raises at the first call, before anything ran, instead of
            # running half the step compiled and half eagerly
            self.compiled_forward = torch.compile(self.forward, mode=capture.mode, fullgraph=True, dynamic=False)
        if capture.optimizer:
            # the optimizer's own graph breaks (its no_grad switch) are by design: not fullgraph
            self.compiled_optimizer = torch.compile(self._optimizer_step, dynamic=False)
        how = f"compiled ({capture.mode or 'inductor default'})" if capture.compiled else "eager"
        log.info("training step: %s%s", how, f"; {capture.reason}" if capture.reason else "")

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> Outputs:
        """Forward and loss under autocast, the loss times ``weight`` (a rank's share of a global
        batch), plus the penalty (in fp32)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            output = self.model(x)
            loss = self.loss_fn(fit_output(output, y.dim()), y)
        weighted = loss * weight if weight != 1.0 else loss
        total = weighted + self.penalty() if self.penalty is not None else weighted
        correct = self.score(output.detach(), y) if self.score is not None else None
        return total, loss.detach(), correct

    def _optimizer_step(self) -> None:
        # the class's step, not the instance's: an lr scheduler wraps that one in a function
        # torch.compile does not trace (torch/optim/lr_scheduler.py is skipped)
        type(self.optimizer).step(self.optimizer)

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        observed: bool,
        after_backward: Callable[[], None],
        weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step on the batch ``(x, y)``; ``observed``: a callback watches it (eager module, and
        for fp16 the gradients unscaled before ``after_backward``); ``weight``: the loss's, on one
        rank of several (their steps are never captured)."""
        self.steps += 1
        compiled = self.compiled and not observed and weight == 1.0
        shapes = (x.shape, x.dtype, y.shape, y.dtype)
        # where the backward is yet to compile, the buffers (batch norm's statistics) as they were
        first = compiled and shapes not in self.backward_ran
        buffers = [buffer.clone() for buffer in self.model.buffers()] if first else []
        if weight != 1.0:
            total, loss, correct = self.forward(x, y, weight)
        else:
            total, loss, correct = self._forward(x, y, compiled=compiled)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            self._backward(total)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            if not (compiled and self.compiled):  # the forward ran eagerly: no compiled backward failed
                raise
            # the compiled backward failed (compiled at its first call, or run): the optimizer has
            # not stepped, so the step is redone eagerly from the same parameters and buffers
            # (unless a recompile for shapes whose backward ran before: the statistics then take
            # this batch twice)
            self._fall_back(exc)
            with torch.no_grad():
                for buffer, value in zip(self.model.buffers(), buffers, strict=False):
                    buffer.copy_(value)
            self.optimizer.zero_grad(set_to_none=True)
            total, loss, correct = self.forward(x, y)
            self._backward(total)
        if compiled and self.compiled:
            self.backward_ran.add(shapes)
        scaler = self.precision.scaler
        if scaler is not None and observed:
            scaler.unscale_(self.optimizer)  # the callbacks read the true gradients
        after_backward()
        if scaler is not None:
            scaler.step(self.optimizer)  # skipped (and the scale lowered) when a gradient is inf or NaN
            scaler.update()
        else:
            self._step_optimizer(compiled=self.compiled and not observed)
        return loss, correct

    def _backward(self, total: torch.Tensor) -> None:
        scaler = self.precision.scaler
        (scaler.scale(total) if scaler is not None else total).backward()

    # A compile error in the forward or the optimizer's step is raised before the compiled code
    # runs (fullgraph forward; the optimizer's graph is its whole math), so after one the state is
    # as it was and the eager path redoes it. The backward is compiled at its first call, after the
    # compiled forward ran: the step is then redone eagerly whole (see __call__).

    def _forward(self, x: torch.Tensor, y: torch.Tensor, *, compiled: bool) -> Outputs:
        if compiled and self.compiled_forward is not None:
            if self.mark_steps:
                torch.compiler.cudagraph_mark_step_begin()
            try:
                return self.compiled_forward(x, y)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:
                self._fall_back(exc)
        return self.forward(x, y)

    def _step_optimizer(self, *, compiled: bool) -> None:
        if compiled and self.compiled_optimizer is not None:
            try:
                self.compiled_optimizer()
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:
                self._fall_back(exc)
            else:
                self.optimizer._opt_called = True  # type: ignore[attr-defined]  # as the scheduler's wrapper notes
                return
        self.optimizer.step()

    def _fall_back(self, exc: Exception) -> None:
        reason = f"torch.compile failed at step {self.steps}: {_describe(exc)}"
        log.warning("training eagerly from here: %s", reason)
        torch.set_grad_enabled(True)  # a failed optimizer trace may leave its no_grad switched on
        self.compiled, self.eager_reason = False, reason
        self.compiled_forward = self.compiled_optimizer = None

    def summary(self) -> dict[str, Any]:
        """How the run's steps ran, for its summary."""
        return {
            "precision": self.precision.name,
            "step": "compiled" if self.compiled else "eager",
            "eager_reason": self.eager_reason,
        }
