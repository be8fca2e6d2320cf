"""Epoch time of the digits CNN with the image augmentation pipeline (hflip + random_crop + cutout)
÷ the same CNN without it. Runs are interleaved (plain, augmented, plain, ...) and the medians of
the per-epoch times are compared; the first epoch of every run is a warm-up and not counted.
Wall-clock time is the measure; the process's CPU time per epoch is shown beside it because it
is far less disturbed by other programs on a busy machine.

    python bench/augment_overhead.py [--repeats 7] [--epochs 6] [--threads N] [--device cpu]

Target: ratio ≤ 1.15 on CPU."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import run_experiment
from core.spec.schema import parse_spec

AUGMENT = [
    {"type": "hflip", "p": 0.5},
    {"type": "random_crop", "padding": 1, "p": 0.5},
    {"type": "cutout", "size": 3, "p": 0.5},
]


def document(augment: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    return {
        "name": "bench-augment",
        "epochs": epochs,
        "data": {
            "source": {"type": "builtin", "name": "digits"},
            "split": {"validation": 0.0, "test": 0.0},  # the epoch is training only
            "batch_size": 128,
            "augment": augment,
        },
        "model": {
            "type": "cnn",
            "layers": [
                {"type": "conv", "filters": 16, "kernel": 3, "padding": "same"},
                {"type": "activation"},
                {"type": "conv", "filters": 32, "kernel": 3, "padding": "same"},
                {"type": "activation"},
                {"type": "max_pool", "kernel": 2},
            ],
        },
        "schedule": {"type": "constant"},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.started = self.cpu_started = 0.0

    def on_epoch_start(self, state: State) -> None:
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def on_epoch_end(self, state: State) -> None:  # after the epoch's metrics were synced to the host
        self.seconds.append(time.perf_counter() - self.started)
        self.cpu_seconds.append(time.process_time() - self.cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    plans = {}
    for name, augment in (("plain", []), ("augmented", AUGMENT)):
        spec = parse_spec(document(augment, args.epochs))
        plans[name] = plan_experiment(spec)
    times: dict[str, list[float]] = {name: [] for name in plans}
    cpu: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(args.repeats):
        for name, plan in plans.items():  # interleaved, so drift in the machine's load hits both
            timer = EpochTimer()
            result = run_experiment(plan.spec, plan=plan, callbacks=[timer], device=args.device)
            assert result.status == "succeeded", result.failure
            times[name].extend(timer.seconds[1:])
            cpu[name].extend(timer.cpu_seconds[1:])
    plain, plain_cpu = statistics.median(times["plain"]), statistics.median(cpu["plain"])
    steps = result.steps // args.epochs
    print(
        f"digits CNN, {steps} steps/epoch of 128, device {args.device}, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved runs × {args.epochs - 1} timed epochs"
    )
    print("| pipeline                             | median epoch (ms) | p25-p75 (ms)   | ratio | CPU ms | CPU ratio |")
    print("|--------------------------------------|-------------------|----------------|-------|--------|-----------|")
    for name, label in (("plain", "no augmentation"), ("augmented", "hflip + random_crop + cutout, p=0.5")):
        median, cpu_median = statistics.median(times[name]), statistics.median(cpu[name])
        low, _, high = statistics.quantiles(times[name], n=4)
        spread = f"{low * 1e3:.1f}-{high * 1e3:.1f}"
        print(
            f"| {label:<36} | {median * 1e3:>17.1f} | {spread:<14} | {median / plain:>5.3f} "
            f"| {cpu_median * 1e3:>6.1f} | {cpu_median / plain_cpu:>9.3f} |"
        )
    ratio = statistics.median(times["augmented"]) / plain
    print(f"ratio {ratio:.3f} (target ≤ 1.15): {'ok' if ratio <= 1.15 else 'over target'}")


if __name__ == "__main__":
    main()
