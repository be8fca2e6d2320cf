"""Per-epoch cost end to end: `trainyard train SPEC --json --out TMP` as a whole process against a
hand-written PyTorch script (``bench/plain_train.py``) doing the same work: the digits MLP with the
data on the device, Adam, batch 128, constant lr, validation every epoch, no early stopping or
diagnostics. Each is run for a short and a long number of epochs; the per-epoch cost is
(long run − short run) / (long − short epochs), so start-up, data loading and the final save
cancel and what remains is what an epoch costs, everything outside its steps included (the
metric syncs, metrics.jsonl, checkpoints under the CLI's policy, the progress callback).
``--progress`` adds `trainyard train` without --json, its progress bar drawn on a terminal (a
pseudo-terminal the bench reads).

The processes of a round run one after the other in an order that rotates from round to round;
the paired ratio is the median over rounds of (Trainyard ÷ plain) within a round, so a machine
whose speed drifts slows both alike. CPU seconds are the operating system's account of each
finished child (user + system), far less moved by other programs than wall time. Every process
gets the same torch thread count through OMP_NUM_THREADS.

On the shared 2-core machine one round's per-epoch figure varies by about ±10 % (the quartiles
column shows it), so resolving a few percent takes many rounds (--rounds 15: ~17 minutes).
Besides the processes, the pieces an epoch adds outside its steps are timed one by one in the
bench's own process (CPU time, fastest of several repeats): steadier than a difference of two
noisy process times.

    python bench/engine_overhead.py --end-to-end [--rounds 9] [--short 5] [--long 45] [--threads 1] [--progress]
"""

import io
import json
import os
import pty
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench.engine_overhead import BATCH, LR, SEED, PlainLoop

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = [1024, 1024]
TARGET = 1.03
CLI, SHOWN, PLAIN = "trainyard train --json", "trainyard train, progress bar on a terminal", "plain PyTorch"


def spec(*, hidden: list[int], epochs: int) -> dict[str, Any]:
    """The spec both sides train: digits (split 0.6 / 0.2 / 0.2, standardized), an MLP with ReLU,
    Adam lr 1e-3, batch 128, constant lr, validation every epoch, no early stopping or diagnostics."""
    return {
        "name": "bench-epoch-cost",
        "task": "classification",
        "seed": SEED,
        "epochs": epochs,
        "data": {
            "source": {"type": "builtin", "name": "digits"},
            "split": {"validation": 0.2, "test": 0.2, "stratify": True},
            "batch_size": BATCH,
            "preprocess": [{"type": "standardize"}],
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
        "diagnostics": {"activations": False, "gradients": False},
    }


def flat(data: Any) -> Any:
    """A split with its samples as rows (the engine's MLP starts with a Flatten: the same values)."""
    from core.data.dataset import Dataset

    return Dataset(data.x.reshape(len(data), -1), data.y, "tabular", data.classes)


@dataclass
class Process:
    """One finished run: wall and CPU seconds of the whole process, and its last epoch's metrics."""

    wall: float
    cpu: float
    result: dict[str, Any]


@dataclass
class Variant:
    short: list[Process] = field(default_factory=list)
    long: list[Process] = field(default_factory=list)

    def per_epoch(self, kind: str, epochs: int) -> list[float]:
        """Each round's (long − short) / epochs, in ``kind`` ('wall' or 'cpu') seconds."""
        pairs = zip(self.long, self.short, strict=True)
        return [(getattr(a, kind) - getattr(b, kind)) / epochs for a, b in pairs]


def drained(fd: int) -> threading.Thread:
    """A thread reading ``fd`` (a pseudo-terminal's controlling side) until the other side closes."""

    def read() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError:  # EIO: every holder of the terminal side has closed it
            pass

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def timed(argv: list[str], env: dict[str, str], *, terminal: bool) -> tuple[float, float, str]:
    """Run ``argv`` to its end (its stderr on a pseudo-terminal when ``terminal``): wall and CPU
    seconds (the children's resource usage: one child runs at a time) and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if terminal:
        controller, stderr = pty.openpty()
        reader = drained(controller)
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        os.close(stderr)
        reader.join()
        os.close(controller)
    else:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{(done.stderr or '')[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def run_once(name: str, epochs: int, hidden: list[int], device: str | None, env: dict[str, str]) -> Process:
    """One process of ``name`` for ``epochs`` epochs, in a fresh temporary folder."""
    device_args = ["--device", device] if device else []
    with tempfile.TemporaryDirectory() as folder:
        if name == PLAIN:
            script = str(ROOT / "bench" / "plain_train.py")
            argv = [sys.executable, script, "--epochs", str(epochs), "--hidden", *map(str, hidden), *device_args]
            wall, cpu, out = timed(argv, env, terminal=False)
            return Process(wall, cpu, json.loads(out.strip().splitlines()[-1]))
        path, run = Path(folder) / "spec.json", Path(folder) / "run"
        path.write_text(json.dumps(spec(hidden=hidden, epochs=epochs)))
        argv = [sys.executable, "-m", "cli.main", "train", str(path), "--out", str(run), *device_args]
        wall, cpu, _ = timed(argv + (["--json"] if name == CLI else []), env, terminal=name == SHOWN)
        return Process(wall, cpu, json.loads((run / "summary.json").read_text()))


def measure(
    *, rounds: int, short: int, long: int, hidden: list[int], threads: int, device: str | None, progress: bool
) -> dict[str, Variant]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "COLUMNS": "120"}
    variants = {name: Variant() for name in (CLI, *([SHOWN] if progress else []), PLAIN)}
    runs = [(name, length) for length in ("short", "long") for name in variants]
    for index in range(rounds):
        shift = index % len(runs)
        for name, length in runs[shift:] + runs[:shift]:
            process = run_once(name, short if length == "short" else long, hidden, device, env)
            getattr(variants[name], length).append(process)
            print(f"round {index + 1}/{rounds}: {name}, {length}: {process.wall:.2f}s", file=sys.stderr)
    return variants


def table(variants: dict[str, Variant], *, epochs: int, title: str) -> tuple[str, tuple[str, ...], list]:
    """One row per variant: median process times, per-epoch seconds and ratios to the plain script."""
    base_wall, base_cpu = variants[PLAIN].per_epoch("wall", epochs), variants[PLAIN].per_epoch("cpu", epochs)
    rows = []
    for name, variant in variants.items():
        wall, cpu = variant.per_epoch("wall", epochs), variant.per_epoch("cpu", epochs)
        ratio = statistics.median(wall) / statistics.median(base_wall)
        quartiles = statistics.quantiles(wall, n=4) if len(wall) > 1 else [wall[0]] * 3
        verdict = "" if name == PLAIN else ("meets" if round(ratio, 3) <= TARGET else "ABOVE") + f" ≤{TARGET:.2f}"
        last = variant.long[-1].result
        rows.append(
            (
                name,
                f"{statistics.median(p.wall for p in variant.short):.2f}",
                f"{statistics.median(p.wall for p in variant.long):.2f}",
                f"{statistics.median(wall):.4f}",
                f"{quartiles[0]:.3f}–{quartiles[2]:.3f}",
                f"{ratio:.3f}",
                verdict,
                f"{statistics.median(a / b for a, b in zip(wall, base_wall, strict=True)):.3f}",
                f"{statistics.median(cpu):.4f}",
                f"{statistics.median(a / b for a, b in zip(cpu, base_cpu, strict=True)):.3f}",
                f"{last['train_loss']:.6f} / {last['val_loss']:.6f}",
            )
        )
    header = (
        "variant",
        "short run s",
        "long run s",
        "per-epoch s",
        "rounds' quartiles",
        "ratio vs plain",
        "target",
        "paired ratio",
        "per-epoch CPU s",
        "paired CPU ratio",
        "last train / val loss",
    )
    return title, header, rows


def describe(*, rounds: int, short: int, long: int, hidden: list[int], threads: int, device: str | None) -> str:
    from core.engine.run import pick_device
    from core.settings import Settings

    settings = Settings()
    return (
        f"End to end: digits MLP 64→{'→'.join(map(str, hidden))}→10, Adam, batch {BATCH}, validation every "
        f"epoch, device {pick_device(device)}, {threads} torch thread(s); per epoch = ({long} − {short} epochs) "
        f"÷ {long - short}, medians of {rounds} rounds; CLI checkpoints every {settings.checkpoint_every} "
        f"epoch(s), ≥ {settings.checkpoint_min_interval_s:g} s apart"
    )


def best_microseconds(function: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Process CPU time of one call, the fastest of ``repeat`` tries of ``number`` calls."""
    return 1e6 * min(timeit.repeat(function, number=number, repeat=repeat, timer=time.process_time)) / number


def fastest_difference(function: Callable[[], object], base: Callable[[], object], repeat: int = 21) -> float:
    """CPU µs of ``function`` − ``base``, each the fastest of ``repeat`` calls made in turn (so a busy
    spell of the machine slows both)."""
    times: dict[Callable[[], object], list[float]] = {function: [], base: []}
    for _ in range(repeat):
        for call, seconds in times.items():
            started = time.process_time()
            call()
            seconds.append(time.process_time() - started)
    return 1e6 * (min(times[function]) - min(times[base]))


def refresh_cpu_per_second(seconds: float = 3.0) -> float:
    """CPU µs per second that `trainyard train`'s progress bar costs while shown on a terminal
    (its refresh thread redraws it on its own), one training task shown."""
    from cli.main import EpochProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with EpochProgress(100, disable=False, console=console) as progress:
        progress.update(None, 1, {"train_loss": 0.5, "train_accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.9})
        used = time.process_time()
        time.sleep(seconds)
        return 1e6 * (time.process_time() - used) / seconds


def epoch_pieces(hidden: list[int], device: str | None) -> tuple[str, tuple[str, ...], list]:
    """What `trainyard train` adds to an epoch outside its steps, timed piece by piece against the
    plain script's epoch, with the callbacks train_run and the CLI attach."""
    from cli.main import EpochProgress, _progress_callback
    from core.engine.callbacks import History, MetricsFile
    from core.engine.checkpoint import Checkpointer, save_checkpoint
    from core.engine.events import Event
    from core.engine.plan import plan_experiment
    from core.engine.run import pick_device, prepare_splits, training_state
    from core.engine.trainer import Trainer
    from core.nn.models import build_model, initialise
    from core.settings import Settings
    from core.spec.schema import parse_spec

    experiment = parse_spec(spec(hidden=hidden, epochs=1000))
    plan, torch_device, settings = plan_experiment(experiment), pick_device(device), Settings()
    torch.manual_seed(experiment.seed)
    splits = prepare_splits(experiment, plan.data).to(torch_device)
    model, _ = build_model(experiment.model, plan.input_shape or plan.data.sample_shape, plan.outputs)
    initialise(model, experiment.model.init)
    plain = PlainLoop(flat(splits.train), hidden, [p.detach().clone() for p in model.parameters()], torch_device)
    plain_validation = flat(splits.validation)
    model.to(torch_device)
    state, scheduler = training_state(experiment, model, torch_device, splits.train)
    with tempfile.TemporaryDirectory() as folder, EpochProgress(1000, disable=True) as progress:
        history, metrics = History(), MetricsFile(Path(folder) / "metrics.jsonl")
        checkpointer = Checkpointer(Path(folder) / "checkpoint", settings.checkpoint_every)
        bar = _progress_callback(progress)
        callbacks = [history, metrics, checkpointer, bar]
        generator = torch.Generator(device=torch_device).manual_seed(SEED)
        trainer = Trainer(state, callbacks, scheduler=scheduler, generator=generator)
        trainer.fit(splits.train, splits.validation, epochs=1)

        def plain_epoch() -> None:
            plain.epoch()
            plain.validate(plain_validation)

        def queue_epoch_metrics() -> None:
            for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                state.record(name, torch.zeros((), device=torch_device))
            state.record("lr", 1e-3)

        def sync_alone() -> None:
            queue_epoch_metrics()
            handlers, trainer.handlers = trainer.handlers, {event: [] for event in Event}
            trainer.sync()
            trainer.handlers = handlers

        def evaluate() -> None:
            trainer.evaluate(splits.validation, "val")
            trainer.sync()

        epoch_us = best_microseconds(plain_epoch, 1, repeat=5)
        trainer.sync()
        save_us = best_microseconds(lambda: save_checkpoint(checkpointer.folder, state.snapshot()), 3, repeat=5)
        saves_per_epoch = min(1.0, epoch_us / 1e6 / settings.checkpoint_min_interval_s) / settings.checkpoint_every
        pieces = [
            ("epoch-end metric sync: 5 values in one transfer", best_microseconds(sync_alone, 100)),
            (
                "METRICS callbacks: History + metrics.jsonl append",
                best_microseconds(lambda: (history.on_metrics(state), metrics.on_metrics(state)), 100),
            ),
            (
                "progress callback (EpochProgress.update)",
                best_microseconds(lambda: bar.on_epoch_end(state), 100),
            ),
            (
                f"checkpoint: snapshot + save, {save_us / 1e3:.1f} ms each × {saves_per_epoch:.3f} per epoch",
                save_us * saves_per_epoch,
            ),
            (
                "validation: Trainer.evaluate + sync − the plain validation pass",
                fastest_difference(evaluate, lambda: plain.validate(plain_validation)),
            ),
        ]
    refresh_us = refresh_cpu_per_second() * epoch_us / 1e6
    rows = [(name, f"{us:.1f}", f"{100 * us / epoch_us:.3f}%") for name, us in pieces]
    extra = sum(us for _, us in pieces)
    rows.append(
        (
            f"= `trainyard train --json`: estimated ratio {1 + extra / epoch_us:.4f}",
            f"{extra:.1f}",
            f"{100 * extra / epoch_us:.3f}%",
        )
    )
    rows.append(
        (
            "progress bar redrawn on a terminal (its refresh thread)",
            f"{refresh_us:.1f}",
            f"{100 * refresh_us / epoch_us:.3f}%",
        )
    )
    shown = extra + refresh_us
    rows.append(
        (
            f"= `trainyard train` on a terminal: estimated ratio {1 + shown / epoch_us:.4f}",
            f"{shown:.1f}",
            f"{100 * shown / epoch_us:.3f}%",
        )
    )
    title = (
        f"What an epoch adds outside its steps, timed piece by piece in CPU time (plain epoch {epoch_us / 1e3:.1f} ms)"
    )
    return title, ("piece", "µs per epoch", "of a plain epoch"), rows
