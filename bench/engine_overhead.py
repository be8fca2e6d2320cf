"""Engine overhead: Trainyard's Trainer against a hand-written PyTorch loop on the same data.

Every variant trains the same MLP (64 → 512 → 256 → 10, ReLU, Adam lr 1e-3, batch 128) on the
same synthetic tabular set (20k × 64, 10 classes), held in memory as tensors; data preparation
is not timed. The Trainyard variants run ``core.engine.trainer.Trainer`` set up the way
``run_experiment`` sets it up (model, init, optimizer, schedule, loss and callbacks from a
spec: l2 0, constant schedule, no early stopping, no preprocessing) plus what ``train_run``
adds: metrics.jsonl and checkpoints under the default policy (every epoch, ≥ 10 s apart). The
plain loop uses torch.optim.Adam, randperm batching and calls ``.item()`` only at the end of an epoch.

All variants start from the same weights and draw the same batch order, so their training
losses must agree: the last column checks that the engine does the same work. Epochs are
interleaved (plain, Trainyard, Trainyard + diagnostics, then again, the order rotating), so a
noisy neighbour on the machine slows all variants alike; each variant's first epoch is
warm-up and is not counted. A Trainyard epoch is one ``Trainer.fit(epochs=state.epoch + 1)``
call on a Trainer kept across epochs (fit continues from ``state.epoch``, as a resumed run
does), timed from its EPOCH_START until every callback has handled its EPOCH_END (the epoch's
steps, the metric sync, metrics.jsonl, a due checkpoint).

    python bench/engine_overhead.py            # 20k samples, 10 timed epochs per variant
    python bench/engine_overhead.py --quick    # 8k samples, 4 timed epochs per variant
    python bench/engine_overhead.py --tiny     # also a tiny MLP, where the engine's per-step cost shows
    python bench/engine_overhead.py --profile  # also: cProfile of the engine's own code
    python bench/engine_overhead.py --end-to-end  # `trainyard train` processes, ~10 min (bench/end_to_end.py)

Besides the timed epochs it times, piece by piece, what the engine adds to a step (fastest of
several repeats, in process CPU time): on a shared machine that estimate is far steadier than
the difference of two noisy epoch times.
"""

import argparse
import cProfile
import io
import math
import pstats
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import run_folder
from core.data.dataset import Dataset
from core.engine.callbacks import History, MetricsFile
from core.engine.checkpoint import Checkpointer
from core.engine.events import Callback, Event, State
from core.engine.run import DEFAULT_CHECKPOINTS, engine_callbacks, training_state
from core.engine.trainer import Trainer
from core.nn.models import build_model, initialise
from core.spec.schema import ExperimentSpec, parse_spec

FEATURES, CLASSES, HIDDEN, BATCH, LR, SEED = 64, 10, [512, 256], 128, 1e-3, 0
TINY_HIDDEN = [8]  # compute is negligible: what remains per step is framework and engine cost
PLAIN, BARE, FULL = "plain PyTorch", "Trainyard, no diagnostics", "Trainyard, diagnostics every 20 steps"
BOTH = (BARE, FULL)
TARGETS = {BARE: 1.03, FULL: 1.10}


def spec_for(*, hidden: list[int], diagnostics: bool) -> ExperimentSpec:
    """The spec the Trainyard variants run. Its data source is never loaded (the Trainer gets the
    prepared tensors); it only has to be valid."""
    return parse_spec(
        {
            "name": "bench-engine-overhead",
            "task": "classification",
            "seed": SEED,
            "epochs": 1,
            "data": {
                "source": {"type": "builtin", "name": "moons"},
                "split": {"validation": 0.0, "test": 0.0},
                "batch_size": BATCH,
                "preprocess": [],
            },
            "model": {
                "type": "mlp",
                "hidden": hidden,
                "activation": {"type": "relu"},
                "init": {"type": "kaiming"},
                "dropout": 0.0,
            },
            "loss": {"type": "cross_entropy"},
            "optimizer": {"type": "adam", "lr": LR},
            "schedule": {"type": "constant"},
            "regularization": {"l1": 0.0, "l2": 0.0, "early_stopping": None},
            "diagnostics": {"activations": diagnostics, "gradients": diagnostics, "every_n_steps": 20},
        }
    )


def synthetic_data(samples: int) -> Dataset:
    """Gaussian features; labels from a noisy random linear teacher, so there is something to learn."""
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(samples, FEATURES, generator=generator)
    teacher = torch.randn(FEATURES, CLASSES, generator=generator)
    y = (x @ teacher + 0.5 * torch.randn(samples, CLASSES, generator=generator)).argmax(1)
    return Dataset(x, y, "tabular", [str(c) for c in range(CLASSES)])


def initial_weights(hidden: list[int]) -> list[torch.Tensor]:
    """The engine's model, built and initialised from the spec: every variant starts from these."""
    spec = spec_for(hidden=hidden, diagnostics=False)
    torch.manual_seed(SEED)
    model, _ = build_model(spec.model, (FEATURES,), CLASSES)
    initialise(model, spec.model.init)
    return [p.detach().clone() for p in model.parameters()]


def load_weights(model: nn.Module, weights: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for param, weight in zip(model.parameters(), weights, strict=True):
            param.copy_(weight)


@dataclass
class Timings:
    """Wall and process-CPU seconds of every epoch, and the last epoch's mean training loss."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    train_loss: float = math.nan
    _started: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


class EpochTimer(Callback):
    """Starts the epoch's clock at EPOCH_START: the first callback, so it starts before the others."""

    def __init__(self, timings: Timings) -> None:
        self.timings = timings

    def on_epoch_start(self, state: State) -> None:
        self.timings.start()


class EpochEndTimer(Callback):
    """Stops it at EPOCH_END: the last callback, so every other epoch-end callback is inside."""

    def __init__(self, timings: Timings) -> None:
        self.timings = timings

    def on_epoch_end(self, state: State) -> None:
        self.timings.stop()


class PlainLoop:
    """The loop a person writes by hand: same model, optimizer and batching; .item() once an epoch
    (and once a validation). ``data`` (and the model) live on ``device``."""

    def __init__(
        self, data: Dataset, hidden: list[int], weights: list[torch.Tensor], device: torch.device | None = None
    ) -> None:
        self.device = device or torch.device("cpu")
        layers: list[nn.Module] = []
        width = FEATURES
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.model = nn.Sequential(*layers, nn.Linear(width, CLASSES))
        load_weights(self.model, weights)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.loss_fn = nn.CrossEntropyLoss()
        self.generator = torch.Generator(device=self.device).manual_seed(SEED)
        self.data = data
        self.timings = Timings()

    def epoch(self) -> None:
        model, optimizer, loss_fn = self.model, self.optimizer, self.loss_fn
        x_all, y_all, n = self.data.x, self.data.y, len(self.data)
        self.timings.start()
        model.train()
        order = torch.randperm(n, device=self.device, generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, n, BATCH):
            index = order[start : start + BATCH]
            x, y = x_all[index], y_all[index]
            output = model(x)
            loss = loss_fn(output, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            correct += (output.detach().argmax(-1) == y).sum()
        train_loss, _train_accuracy = loss_sum.item() / n, correct.item() / n
        self.timings.stop()
        self.timings.train_loss = train_loss

    @torch.no_grad()
    def validate(self, data: Dataset) -> tuple[float, float]:
        """(loss, accuracy) over a whole split in one forward pass."""
        self.model.eval()
        output = self.model(data.x)
        loss = self.loss_fn(output, data.y)
        correct = (output.argmax(-1) == data.y).sum()
        return loss.item(), correct.item() / len(data)


class TrainyardLoop:
    """Trainyard's Trainer, set up as train_run sets it up (minus loading and splitting data): the
    spec's callbacks, then metrics.jsonl and checkpoints under the default policy, in a temporary folder."""

    def __init__(self, data: Dataset, hidden: list[int], weights: list[torch.Tensor], *, diagnostics: bool) -> None:
        spec = spec_for(hidden=hidden, diagnostics=diagnostics)
        device = torch.device("cpu")
        model, _ = build_model(spec.model, (FEATURES,), CLASSES)
        load_weights(model, weights)
        self.state, scheduler = training_state(spec, model, device, data)
        self.timings = Timings()
        self.history = History()
        self.folder = tempfile.TemporaryDirectory()  # removed with the loop
        folder = Path(self.folder.name)
        policy = DEFAULT_CHECKPOINTS
        own = [
            MetricsFile(folder / run_folder.METRICS),
            Checkpointer(run_folder.checkpoint_folder(folder), policy.every_n_epochs, policy.min_interval_s),
        ]
        callbacks = [EpochTimer(self.timings), self.history, *engine_callbacks(spec), *own, EpochEndTimer(self.timings)]
        generator = torch.Generator(device=device).manual_seed(SEED)
        self.trainer = Trainer(self.state, callbacks, scheduler=scheduler, generator=generator, sync_every=50)
        self.data = data

    def epoch(self) -> None:
        self.trainer.fit(self.data, None, epochs=self.state.epoch + 1)  # one more epoch
        if self.state.stopping:
            raise RuntimeError(f"the Trainyard run stopped: {self.state.stop_reason}")
        self.timings.train_loss = self.history.series("train_loss")[-1]


def make_variants(data: Dataset, hidden: list[int]) -> dict[str, PlainLoop | TrainyardLoop]:
    weights = initial_weights(hidden)
    return {
        PLAIN: PlainLoop(data, hidden, weights),
        BARE: TrainyardLoop(data, hidden, weights, diagnostics=False),
        FULL: TrainyardLoop(data, hidden, weights, diagnostics=True),
    }


def measure(data: Dataset, hidden: list[int], *, epochs: int, label: str) -> dict[str, Timings]:
    """One warm-up epoch, then ``epochs`` timed epochs per variant, interleaved epoch by epoch."""
    variants = make_variants(data, hidden)
    names = list(variants)
    for index in range(epochs + 1):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            variants[name].epoch()
        if index:
            done = ", ".join(f"{name} {variants[name].timings.wall[-1]:.4f}s" for name in names)
            print(f"{label} epoch {index}/{epochs}: {done}", file=sys.stderr)
    for variant in variants.values():
        variant.timings.wall.pop(0)
        variant.timings.cpu.pop(0)
    return {name: variant.timings for name, variant in variants.items()}


def print_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        print(title)
        for row in [header, *rows]:
            print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        return
    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(column, justify="left" if column in ("variant", "target", "piece") else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=170).print(table)


def paired_ratio(timings: Timings, base: Timings, kind: str) -> float:
    """Median over epochs of (this epoch / the plain epoch run next to it)."""
    return statistics.median(a / b for a, b in zip(getattr(timings, kind), getattr(base, kind), strict=True))


def overhead_table(results: dict[str, Timings], title: str) -> None:
    base = results[PLAIN]
    rows = []
    for name, timings in results.items():
        median = statistics.median(timings.wall)
        ratio = median / statistics.median(base.wall)
        target = TARGETS.get(name)
        meets = round(ratio, 3) <= target if target is not None else True  # judged as printed
        verdict = "" if target is None else ("meets" if meets else "ABOVE") + f" ≤{target:.2f}"
        rows.append(
            (
                name,
                f"{median:.4f}",
                f"{ratio:.3f}",
                verdict,
                f"{paired_ratio(timings, base, 'wall'):.3f}",
                f"{min(timings.wall) / min(base.wall):.3f}",
                f"{paired_ratio(timings, base, 'cpu'):.3f}",
                f"{timings.train_loss:.6f}",
            )
        )
    header = (
        "variant",
        "median epoch s",
        "ratio vs plain",
        "target",
        "paired ratio",
        "best-epoch ratio",
        "CPU-time ratio",
        "last train loss",
    )
    print_table(title, header, rows)


def per_step_table(results: dict[str, Timings], steps: int, title: str) -> None:
    base = results[PLAIN]

    def extra(timings: Timings, kind: str) -> str:
        pairs = zip(getattr(timings, kind), getattr(base, kind), strict=True)
        return f"{1e6 * statistics.median(a - b for a, b in pairs) / steps:+.1f}"

    rows = [
        (
            name,
            f"{1e6 * statistics.median(timings.wall) / steps:.1f}",
            extra(timings, "wall"),
            extra(timings, "cpu"),
            f"{1e6 * (min(timings.cpu) - min(base.cpu)) / steps:+.1f}",
        )
        for name, timings in results.items()
    ]
    header = (
        "variant",
        "µs per step (median)",
        "extra µs/step (paired median)",
        "extra CPU µs/step (paired median)",
        "extra CPU µs/step (fastest epochs)",
    )
    print_table(title, header, rows)


def best_microseconds(function: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Process CPU time of ``number`` calls, per call, the fastest of ``repeat`` tries: time the process
    spends descheduled by its neighbours does not count, and noise only ever adds time."""
    return 1e6 * min(timeit.repeat(function, number=number, repeat=repeat, timer=time.process_time)) / number


def engine_components(data: Dataset, hidden: list[int], number: int) -> None:
    """What the engine adds to a training step, timed piece by piece (fastest of several repeats,
    so a busy machine hardly moves it), against the plain loop's own step."""
    variants = make_variants(data, hidden)
    for variant in variants.values():
        variant.epoch()
    plain = variants[PLAIN]
    bare, full = variants[BARE], variants[FULL]
    x, y = data.x[:BATCH], data.y[:BATCH]
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)

    def plain_step() -> None:
        nonlocal loss_sum, correct
        output = plain.model(x)
        loss = plain.loss_fn(output, y)
        plain.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        plain.optimizer.step()
        loss_sum += loss.detach() * len(x)
        correct += (output.detach().argmax(-1) == y).sum()

    trainer, state = bare.trainer, bare.state
    full_trainer, full_state = full.trainer, full.state
    diagnostics = next(c for c in full_trainer.callbacks if type(c).__name__ == "Diagnostics")

    def fires(on: Trainer) -> None:
        on.fire(Event.BATCH_START)
        on.fire(Event.AFTER_BACKWARD)
        on.fire(Event.STEP_END)

    def diagnosed_forward(step: int) -> None:
        """A forward pass on a measured (step 0) or unmeasured step: activation hooks or none."""
        full_state.step = step
        diagnostics.on_batch_start(full_state)
        with torch.no_grad():
            full_state.model(x)
        diagnostics.measuring = False
        diagnostics.on_after_backward(full_state)  # only removes the hooks
        full_state.pending.clear()

    def diagnosed_gradients() -> None:
        """Gradient norms, weight copies and update ratios of a measured step."""
        diagnostics.measuring = True
        diagnostics.on_after_backward(full_state)
        diagnostics.on_step_end(full_state)
        full_state.pending.clear()

    def sync_fifty() -> None:
        state.record("train_loss_running", loss_sum / 1000)
        trainer.check_finite(trainer.sync())

    every = full_state.spec.diagnostics.every_n_steps
    step_us = best_microseconds(plain_step, number)
    full_state.step = 1
    hooks_us = best_microseconds(lambda: diagnosed_forward(0), 4 * number) - best_microseconds(
        lambda: diagnosed_forward(1), 4 * number
    )
    gradients_us = best_microseconds(diagnosed_gradients, 4 * number)
    pieces = [  # (what, µs per step, which Trainyard variants pay it)
        ("lr scheduler step (LambdaLR, constant)", best_microseconds(trainer.scheduler.step, 20 * number), BOTH),
        ("metric sync every 50 steps (amortised)", best_microseconds(sync_fifty, 20 * number) / 50, BOTH),
        ("3 event fires, engine callbacks only", best_microseconds(lambda: fires(trainer), 20 * number), BARE),
        ("3 event fires with Diagnostics", best_microseconds(lambda: fires(full_trainer), 20 * number), FULL),
        (f"measured step: activation hooks (mean/std/dead), ÷ {every}", hooks_us / every, FULL),
        (f"measured step: grad norms, weight copies, update ratios, ÷ {every}", gradients_us / every, FULL),
    ]
    rows = [(name, f"{us:.1f}", f"{100 * us / step_us:.2f}%") for name, us, _ in pieces]
    for variant in (BARE, FULL):
        extra = sum(us for _, us, paid_by in pieces if variant in paid_by)
        estimate = f"= {variant}: estimated ratio {1 + extra / step_us:.3f}"
        rows.append((estimate, f"{extra:.1f}", f"{100 * extra / step_us:.2f}%"))
    title = f"What the engine adds per step, timed piece by piece in CPU time (plain step {step_us:.0f} µs)"
    print_table(title, ("piece", "µs per step", "of a plain step"), rows)


def profile(data: Dataset, hidden: list[int], epochs: int, top: int) -> None:
    """cProfile of the Trainyard variants, restricted to the engine's own code and the lr scheduler."""
    variants = make_variants(data, hidden)
    for name, variant in list(variants.items())[1:]:
        variant.epoch()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(epochs):
            variant.epoch()
        profiler.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
        stats.print_stats(r"core/|lr_scheduler", top)
        print(f"\n=== cProfile, {name}, {epochs} epochs: engine code and lr scheduler by own time ===")
        print("\n".join(line for line in stream.getvalue().splitlines()[4:] if line.strip()))


def end_to_end(args: argparse.Namespace) -> None:
    """The per-epoch cost of `trainyard train` against a plain script, whole processes (bench/end_to_end.py)."""
    from bench import end_to_end as e2e

    options = {"rounds": args.rounds, "short": args.short, "long": args.long, "hidden": e2e.HIDDEN}
    options |= {"threads": args.threads, "device": args.device}
    started = time.perf_counter()
    pieces = e2e.epoch_pieces(e2e.HIDDEN, args.device)
    variants = e2e.measure(**options, progress=args.progress)
    print_table(*e2e.table(variants, epochs=args.long - args.short, title=e2e.describe(**options)))
    print_table(*pieces)
    print(f"total {time.perf_counter() - started:.1f}s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8k samples, 4 timed epochs per variant")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default 20000, quick 8000)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per variant (default 10, quick 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every variant (default 1)")
    parser.add_argument("--tiny", action="store_true", help="also measure a tiny MLP (64→8→10): the per-step cost")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the engine's own code")
    parser.add_argument(
        "--end-to-end", action="store_true", help="instead: `trainyard train` vs a plain script, whole processes"
    )
    parser.add_argument("--rounds", type=int, default=9, help="end to end: rounds of processes (default 9)")
    parser.add_argument("--short", type=int, default=5, help="end to end: epochs of the short runs (default 5)")
    parser.add_argument("--long", type=int, default=45, help="end to end: epochs of the long runs (default 45)")
    parser.add_argument("--device", default=None, help="end to end: cpu, cuda (default: cuda if present, as the CLI)")
    parser.add_argument(
        "--progress", action="store_true", help="end to end: also `trainyard train` with its bar on a terminal"
    )
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args)
        return
    samples = args.samples or (8000 if args.quick else 20000)
    epochs = args.epochs or (4 if args.quick else 10)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = synthetic_data(samples)
    steps = math.ceil(samples / BATCH)
    setting = (
        f"Adam, batch {BATCH}, {samples} samples ({steps} steps/epoch), {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, median of {epochs} interleaved epochs"
    )
    results = measure(data, HIDDEN, epochs=epochs, label="MLP")
    overhead_table(results, f"MLP {FEATURES}→{'→'.join(map(str, HIDDEN))}→{CLASSES}, {setting}")
    per_step_table(results, steps, "The same epochs, per optimizer step")
    engine_components(data, HIDDEN, number=20 if args.quick else 50)
    if args.tiny:
        tiny = measure(data, TINY_HIDDEN, epochs=epochs, label="tiny")
        title = f"Where compute is negligible: MLP {FEATURES}→{TINY_HIDDEN[0]}→{CLASSES}, {setting}"
        per_step_table(tiny, steps, title)
        engine_components(data, TINY_HIDDEN, number=20 if args.quick else 50)
    print(f"total {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.profile:
        profile(data, HIDDEN, epochs=2, top=20)


if __name__ == "__main__":
    main()
