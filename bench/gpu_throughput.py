"""Training throughput on one device: hand-written PyTorch loops against Trainyard, samples per second.

Each workload trains one model, at one batch size and precision, in every variant:

- plain PyTorch, hand-written:
  1. naive: a DataLoader over a CPU TensorDataset (shuffled, no workers, no pinned memory), each
     batch moved to the device, ``loss.item()`` every step;
  2. data on the device: the tensors resident on the device, batches by indexing a ``randperm``,
     no host sync in the epoch (its loss read once, at its end);
  3. + CUDA graph (CUDA only): as 2, the whole step (forward, loss, backward, the optimizer's step)
     captured in one ``torch.cuda.CUDAGraph`` with static input buffers, after warm-up steps on a
     side stream: PyTorch's "whole network capture" recipe. The last partial batch is dropped;
  4. torch.compile: as 2, forward and loss compiled with ``mode="reduce-overhead"`` on CUDA (CUDA
     graphs; on the CPU inductor's default mode, so named in the table), the backward through
     the graph AOTAutograd compiled with it, the optimizer's step compiled too (default mode);
- Trainyard: ``run_experiment`` in process on a spec with the same layers, batch size, optimizer
  and precision, its data read from an NPZ ``file`` source: ``"compile": "auto"`` (on CUDA it
  captures the step in CUDA graphs; elsewhere it trains eagerly) and ``"compile": "off"``, to show
  what capture buys. Diagnostics and early stopping off, no preprocessing, no L2, a constant
  schedule, no validation or test split. The table prints its summary's ``step`` and
  ``eager_reason``.

Every variant trains 1 + ``--epochs`` epochs over the same data: the first is warm-up (it holds
compiling and capturing, shown as what it took beyond a steady epoch); samples per second are
the samples trained in the timed epochs ÷ their time. A plain epoch is timed from its start to
its loss on the host (the device synchronised at both ends); a Trainyard epoch from its
EPOCH_START to its EPOCH_END (a callback), by which the epoch's metrics are on the host. Every
variant starts from the same weights (the spec's initialisation, seeded as ``run_experiment``
seeds it): their last epochs' training losses should agree roughly, so a broken variant shows.
The ratios are against the best plain loop; the target is Trainyard ≥ 0.95 × that.

Common to all: SGD, lr 0.05, momentum 0.9, Nesterov (torch.optim.SGD: its default foreach
implementation on CUDA in the plain loops, fused in Trainyard, as Trainyard picks it; SGD keeps no
step count, so it has no ``capturable`` flag and is captured as it is); cross-entropy; ``--precision``
fp32 or bf16 (autocast around forward and loss). Trainyard also puts a CNN in ``channels_last`` on
CUDA; the plain loops keep the default layout.

Data: CIFAR-10-shaped and synthetic (N × 3 × 32 × 32 float32, 10 classes, seeded; nothing is
downloaded): each class a random prototype image, each sample its class's prototype at half
amplitude plus unit Gaussian noise, so the loss has somewhere to go.

Models: one layer list each (Trainyard's ``cnn`` model, which ends in flatten → dense 10), built
into ``nn.Module``s by Trainyard's own builder (``core.nn.models.build_model``, on the plan of
the Trainyard spec), so every variant trains the same architecture:

- small CNN, batch 128: conv 32 (3×3, same) → relu → max_pool 2 → conv 64 (3×3, same) → relu →
  max_pool 2 → flatten → dense 10;
- ResNet-8, batch 512 (8 weight layers, the widths of He et al.'s CIFAR ResNets):
  conv 16 → batch_norm → relu;
  residual [conv 16 → batch_norm → relu → conv 16 → batch_norm] → relu;
  conv 32 stride 2 → batch_norm → relu → residual [conv 32 → batch_norm] → relu;
  conv 64 stride 2 → batch_norm → relu → residual [conv 64 → batch_norm] → relu;
  avg_pool 8 → flatten → dense 10.
  All convolutions 3×3 with "same" padding. Trainyard's ``residual`` needs a body that keeps
  its input's shape (it has no projection shortcut), so the downsampling convolution of stages 2
  and 3 sits before its block instead of inside it; there is no global-pooling layer, so an
  ``avg_pool`` whose kernel is the whole 8×8 map does it.

    python bench/gpu_throughput.py                    # cuda when present: 49,152 samples, 3 timed epochs
    python bench/gpu_throughput.py --quick            # CPU smoke: 512 samples, 1 timed epoch (30–90 s on 2 cores)
    python bench/gpu_throughput.py --precision bf16   # autocast to bfloat16 everywhere

On an H100, run it as below. Estimated, not measured (no GPU was at hand when it was written):
about 3 minutes, most of it compiling with a cold inductor cache (per workload, the plain
torch.compile loop and Trainyard's captured step, ~20–45 s each); the 2 × 6 variants' epochs
(4 each over 49,152 samples) take about a minute in all. ``timeout`` keeps an overrun from
eating a lent machine's time; the per-variant lines on stderr show what it got to.

    timeout 290 python bench/gpu_throughput.py --device cuda --samples 49152 --epochs 3
"""

import argparse
import math
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.dataset import Dataset
from core.data.files import ReadLimits, data_access
from core.engine.events import Callback, State
from core.engine.plan import Plan, plan_experiment
from core.engine.run import pick_device, run_experiment
from core.nn.models import build_model, initialise
from core.spec.schema import parse_spec

SEED, CLASSES, SAMPLE_SHAPE = 0, 10, (3, 32, 32)
LR, MOMENTUM = 0.05, 0.9
WARMUP = "warm-up extra s (compile, capture)"
TARGET = 0.95  # Trainyard's samples/s ÷ the best plain loop's
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch's recipe does
DATA_FILE = "cifar_shaped.npz"

RELU: dict[str, Any] = {"type": "activation", "fn": {"type": "relu"}}
BATCH_NORM: dict[str, Any] = {"type": "batch_norm"}


def conv(filters: int, stride: int = 1) -> dict[str, Any]:
    return {"type": "conv", "filters": filters, "kernel": 3, "stride": stride, "padding": "same"}


def resnet8_layers() -> list[dict[str, Any]]:
    """ResNet-8 (the docstring's): a stem, then three stages of one residual block each, global average pooling."""
    layers = [conv(16), BATCH_NORM, RELU]
    layers += [{"type": "residual", "layers": [conv(16), BATCH_NORM, RELU, conv(16), BATCH_NORM]}, RELU]
    for filters in (32, 64):
        layers += [conv(filters, stride=2), BATCH_NORM, RELU]
        layers += [{"type": "residual", "layers": [conv(filters), BATCH_NORM]}, RELU]
    return [*layers, {"type": "avg_pool", "kernel": 8}]


SMALL_CNN = [conv(32), RELU, {"type": "max_pool", "kernel": 2}, conv(64), RELU, {"type": "max_pool", "kernel": 2}]


@dataclass(frozen=True)
class Workload:
    name: str
    layers: list[dict[str, Any]]  # before the cnn model's own flatten → dense 10
    batch: int


WORKLOADS = (Workload("small CNN", SMALL_CNN, 128), Workload("ResNet-8", resnet8_layers(), 512))


def spec_document(workload: Workload, *, epochs: int, precision: str, compile_mode: str) -> dict[str, Any]:
    """The Trainyard spec of a workload: its data is the NPZ written by ``write_data``."""
    return {
        "name": f"bench-gpu-throughput-{workload.name}",
        "task": "classification",
        "seed": SEED,
        "epochs": epochs,
        "data": {
            "source": {"type": "file", "path": DATA_FILE},
            "split": {"validation": 0.0, "test": 0.0},
            "batch_size": workload.batch,
            "preprocess": [],
        },
        "model": {"type": "cnn", "layers": workload.layers, "init": {"type": "kaiming"}},
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "sgd", "lr": LR, "momentum": MOMENTUM, "nesterov": True},
        "schedule": {"type": "constant"},
        "regularization": {"l1": 0.0, "l2": 0.0, "early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
        "precision": precision,
        "compile": compile_mode,
    }


def write_data(folder: Path, samples: int) -> ReadLimits:
    """The synthetic CIFAR-10-shaped set as ``folder/DATA_FILE`` (arrays x and y), and read limits that admit it."""
    generator = torch.Generator().manual_seed(SEED)
    prototypes = torch.randn(CLASSES, *SAMPLE_SHAPE, generator=generator)
    y = torch.randint(0, CLASSES, (samples,), generator=generator)
    x = torch.randn(samples, *SAMPLE_SHAPE, generator=generator).add_(prototypes[y], alpha=0.5)
    np.savez(folder / DATA_FILE, x=x.numpy(), y=y.numpy())
    return ReadLimits(decoded_bytes=8 * (x.numel() + y.numel()))  # the reader counts values as float64


def input_shape(plan: Plan) -> tuple[int, ...]:
    """The model's input shape, as ``run_experiment`` reads it off the plan."""
    return plan.input_shape or plan.data.sample_shape


@dataclass
class Measured:
    """One variant's epochs (the first is warm-up) and the training loss of its last."""

    name: str
    epoch_s: list[float]
    samples_per_epoch: int
    train_loss: float
    step: str = ""  # Trainyard's summary: compiled or eager, and why

    @property
    def rate(self) -> float:
        timed = self.epoch_s[1:]
        return self.samples_per_epoch * len(timed) / sum(timed)

    @property
    def warmup_extra_s(self) -> float:
        """What the warm-up epoch took beyond a steady one: compiling, capturing, first-call costs."""
        timed = self.epoch_s[1:]
        return self.epoch_s[0] - sum(timed) / len(timed)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainLoop:
    """Variant 2, data on the device: the base of the hand-written loops. A model built from the plan
    with the given initial weights, SGD, cross-entropy, autocast for bf16."""

    name = "plain: data on the device"

    def __init__(self, plan: Plan, weights: dict[str, torch.Tensor], data: Dataset, batch: int, precision: str) -> None:
        self.device = data.x.device
        self.model, _ = build_model(plan.spec.model, input_shape(plan), plan.outputs)
        self.model.load_state_dict(weights)
        self.model.to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
        self.loss_fn = nn.CrossEntropyLoss()
        self.data, self.batch, self.precision = data, batch, precision
        self.generator = torch.Generator(device=self.device).manual_seed(SEED)

    def autocast(self) -> AbstractContextManager:
        if self.precision == "fp32":
            return nullcontext()
        # no cast cache: it must not outlive a captured graph, and a step casts each weight once
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.loss_fn(self.model(x), y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One eager training step; the loss, still on the device."""
        loss = self.forward_loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self) -> tuple[float, int]:
        """One epoch: (its mean training loss, the samples it trained)."""
        self.model.train()
        n = len(self.data)
        order = torch.randperm(n, device=self.device, generator=self.generator)
        total = torch.zeros((), device=self.device)
        for start in range(0, n, self.batch):
            index = order[start : start + self.batch]
            total += self.step(self.data.x[index], self.data.y[index]) * len(index)
        return total.item() / n, n


class NaiveLoop(PlainLoop):
    """Variant 1: a DataLoader over CPU tensors, each batch moved to the device, ``loss.item()`` every step."""

    name = "plain: CPU DataLoader (naive)"

    def __init__(self, plan: Plan, weights: dict[str, torch.Tensor], data: Dataset, batch: int, precision: str) -> None:
        super().__init__(plan, weights, data, batch, precision)
        shuffle = torch.Generator().manual_seed(SEED)
        self.loader = DataLoader(
            TensorDataset(plan.data.x, plan.data.y), batch_size=batch, shuffle=True, generator=shuffle
        )

    def epoch(self) -> tuple[float, int]:
        self.model.train()
        total, n = 0.0, 0
        for x, y in self.loader:
            total += self.step(x.to(self.device), y.to(self.device)).item() * len(x)
            n += len(x)
        return total / n, n


class GraphedLoop(PlainLoop):
    """Variant 3: the whole step replayed from one CUDA graph, batches copied into its static inputs;
    captured during the first epoch, the last partial batch dropped."""

    name = "plain: + CUDA graph"

    def __init__(self, plan: Plan, weights: dict[str, torch.Tensor], data: Dataset, batch: int, precision: str) -> None:
        super().__init__(plan, weights, data, batch, precision)
        self.static_x = torch.empty_like(data.x[:batch])
        self.static_y = torch.empty_like(data.y[:batch])
        self.static_loss = torch.zeros((), device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def capture(self) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream (the optimizer's momentum buffers are made there), then capture
        forward, loss, backward and the optimizer's step, gradients allocated in the graph's pool."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self.step(self.static_x, self.static_y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self.static_loss = self.forward_loss(self.static_x, self.static_y)
            self.static_loss.backward()
            self.optimizer.step()
        return graph

    def epoch(self) -> tuple[float, int]:
        self.model.train()
        steps = len(self.data) // self.batch
        order = torch.randperm(len(self.data), device=self.device, generator=self.generator)
        total = torch.zeros((), device=self.device)
        for start in range(0, steps * self.batch, self.batch):
            index = order[start : start + self.batch]
            torch.index_select(self.data.x, 0, index, out=self.static_x)
            torch.index_select(self.data.y, 0, index, out=self.static_y)
            if self.graph is None:
                self.graph = self.capture()
            self.graph.replay()
            total += self.static_loss.detach()
        return total.item() / steps, steps * self.batch


class CompiledLoop(PlainLoop):
    """Variant 4: forward and loss through torch.compile (reduce-overhead on CUDA: CUDA graphs;
    inductor's default mode elsewhere), the optimizer's step compiled too."""

    def __init__(self, plan: Plan, weights: dict[str, torch.Tensor], data: Dataset, batch: int, precision: str) -> None:
        super().__init__(plan, weights, data, batch, precision)
        self.cuda_graphs = self.device.type == "cuda"
        mode = "reduce-overhead" if self.cuda_graphs else None
        self.name = f"plain: torch.compile ({mode or 'default mode, CPU'})"
        self.compiled_forward = torch.compile(self.forward_loss, mode=mode, fullgraph=True, dynamic=False)
        self.compiled_optimizer_step = torch.compile(self.optimizer_step, dynamic=False)

    def optimizer_step(self) -> None:
        self.optimizer.step()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
        loss = self.compiled_forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.compiled_optimizer_step()
        return loss.detach()


def measure_plain(loop: PlainLoop, epochs: int) -> Measured:
    """1 warm-up epoch and ``epochs`` timed ones, the device synchronised around each."""
    seconds: list[float] = []
    loss = samples = 0
    for _ in range(epochs + 1):
        synchronize(loop.device)
        started = time.perf_counter()
        loss, samples = loop.epoch()
        synchronize(loop.device)
        seconds.append(time.perf_counter() - started)
    return Measured(loop.name, seconds, samples, loss)


class EpochClock(Callback):
    """Each epoch's seconds, from its EPOCH_START to its EPOCH_END (its metrics synced to the host by then)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.started = 0.0

    def on_epoch_start(self, state: State) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, state: State) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def measure_trainyard(plan: Plan, compile_mode: str, device: torch.device) -> Measured:
    """``run_experiment`` on the plan with its spec's ``compile`` set to ``compile_mode``."""
    plan = replace(plan, spec=plan.spec.model_copy(update={"compile": compile_mode}))
    clock = EpochClock()
    result = run_experiment(plan.spec, plan=plan, callbacks=[clock], device=str(device))
    if len(clock.seconds) != plan.spec.epochs:
        raise RuntimeError(f"Trainyard ran {len(clock.seconds)} of {plan.spec.epochs} epochs: {result.summary()}")
    summary = result.summary()
    step = summary["step"] + (f": {summary['eager_reason']}" if summary["eager_reason"] else "")
    return Measured(f"Trainyard, compile {compile_mode}", clock.seconds, len(plan.data), summary["train_loss"], step)


def initial_weights(plan: Plan) -> dict[str, torch.Tensor]:
    """The weights ``run_experiment`` starts from: built and initialised right after seeding."""
    torch.manual_seed(plan.spec.seed)
    model, _ = build_model(plan.spec.model, input_shape(plan), plan.outputs)
    initialise(model, plan.spec.model.init)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def measure_workload(plan: Plan, device: torch.device, epochs: int) -> list[Measured]:
    """Every variant of one workload, in turn."""
    spec = plan.spec
    weights = initial_weights(plan)
    on_device = plan.data.to(device)
    loops: list[type[PlainLoop]] = [NaiveLoop, PlainLoop, CompiledLoop]
    if device.type == "cuda":
        loops.insert(2, GraphedLoop)
    results = []
    for loop_class in loops:
        loop = loop_class(plan, weights, on_device, spec.data.batch_size, spec.precision)
        results.append(measure_plain(loop, epochs))
        print(f"  {results[-1].name}: {results[-1].rate:,.0f} samples/s", file=sys.stderr)
    for compile_mode in ("auto", "off"):
        results.append(measure_trainyard(plan, compile_mode, device))
        print(f"  {results[-1].name}: {results[-1].rate:,.0f} samples/s", file=sys.stderr)
    return results


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} torch threads)"


def print_table(title: str, results: list[Measured]) -> None:
    best = max(r.rate for r in results if r.name.startswith("plain"))
    table = Table(title=title, title_justify="left")
    for column in ("variant", "samples/s", "× best plain", "target", WARMUP, "last train loss", "step"):
        table.add_column(column, justify="left" if column in ("variant", "target", "step") else "right")
    for r in results:
        ratio = r.rate / best
        target = ""
        if r.name.startswith("Trainyard"):
            target = ("meets" if round(ratio, 2) >= TARGET else "BELOW") + f" ≥ {TARGET:.2f}"  # judged as printed
        loss = f"{r.train_loss:.4f}" if math.isfinite(r.train_loss) else str(r.train_loss)
        row = (r.name, f"{r.rate:,.0f}", f"{ratio:.2f}", target, f"{r.warmup_extra_s:.1f}", loss, r.step)
        table.add_row(*row)
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, cpu, cuda:1 (default: cuda when present, else cpu)")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default 49152; quick 512)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs after the warm-up (default 3; quick 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--quick", action="store_true", help="a CPU smoke: 512 samples, 1 timed epoch")
    args = parser.parse_args()
    device = pick_device(args.device)
    samples = args.samples or (512 if args.quick else 49_152)
    epochs = args.epochs or (1 if args.quick else 3)
    largest_batch = max(workload.batch for workload in WORKLOADS)
    if samples < largest_batch:
        parser.error(f"--samples must hold at least one batch of every workload ({largest_batch})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        limits = write_data(Path(folder), samples)
        with data_access(local_base=folder, limits=limits):
            for workload in WORKLOADS:
                document = spec_document(workload, epochs=epochs + 1, precision=args.precision, compile_mode="auto")
                plan = plan_experiment(parse_spec(document))
                print(f"{workload.name}, batch {workload.batch}:", file=sys.stderr)
                results = measure_workload(plan, device, epochs)
                title = (
                    f"{workload.name}, batch {workload.batch}, {args.precision}, {samples:,} samples, "
                    f"{epochs} timed epoch(s) after 1 warm-up: {device_name(device)}, torch {torch.__version__}"
                )
                print_table(title, results)
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
