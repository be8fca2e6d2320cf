"""Validate and train example specs, printing the numbers that show each lesson.

    python examples/measure.py                      # every examples/**/*.json
    python examples/measure.py examples/zero_init.json examples/kaiming_relu.json
    python examples/measure.py --threads 1 ...      # torch intra-op threads (default: torch's)

File sources are read relative to the repository root (like `trainyard train` run from there);
k-fold specs print the mean ± std over the folds, sweep specs each trial's outcome, best first.

Besides the final metrics it prints what the lesson is about: per-layer gradient norms (first and
last weight), activation std at initialisation, the lr per epoch, the epoch of the best val_loss,
and for seed 001's logistic regression the probability it gives the point [6, 4].
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from core.data.files import data_access  # noqa: E402
from core.engine.plan import plan_experiment, validate_document  # noqa: E402
from core.engine.run import RunResult, run_experiment, train_run  # noqa: E402
from core.spec.schema import parse_spec  # noqa: E402
from core.sweep.local import run_sweep  # noqa: E402
from core.sweep.outcome import ranked  # noqa: E402


def layer_index(name: str) -> int:
    """'grad_norm/3_dense.weight' → 3 (layers are named '{index}_{type}')."""
    return int(name.split("/")[1].split("_")[0])


def lesson_lines(result: RunResult, spec_name: str) -> list[str]:
    history = result.history
    names = sorted({p.name for p in history.points})
    lines = []
    grads = sorted((n for n in names if n.startswith("grad_norm/") and n.endswith("weight")), key=layer_index)
    if grads:
        mean = {n: sum(history.series(n)) / len(history.series(n)) for n in grads}
        first, last = grads[0], grads[-1]
        lines.append(f"mean grad norm: first layer {mean[first]:.2e}, last layer {mean[last]:.2e}")
    at_init = {}
    for point in history.points:
        if point.step == 0 and point.name.startswith("act/") and point.name not in at_init:
            at_init[point.name] = point.value
    stds = [v for k, v in at_init.items() if k.endswith("/std")]
    if stds:
        lines.append("activation std at init, per hidden layer: " + " ".join(f"{v:.3g}" for v in stds))
    saturated = [v for k, v in at_init.items() if k.endswith("/saturated")]
    if saturated and max(saturated) > 0.05:
        lines.append("saturated fraction at init: " + " ".join(f"{v:.2f}" for v in saturated))
    dead = [history.series(n)[-1] for n in names if n.startswith("act/") and n.endswith("/dead")]
    if dead and max(dead) > 0.05:
        lines.append("dead ReLU fraction at the last measurement: " + " ".join(f"{v:.2f}" for v in dead))
    lrs = history.series("lr")
    if len(set(lrs)) > 1:
        lines.append("lr at each epoch end: " + " ".join(f"{v:.3g}" for v in lrs))
    val_loss = history.series("val_loss")
    if len(val_loss) > 1:
        best = min(range(len(val_loss)), key=val_loss.__getitem__)
        lines.append(f"best val_loss {val_loss[best]:.4f} at epoch {best + 1} (last {val_loss[-1]:.4f})")
    init_loss = history.series("init_loss")
    if init_loss:
        lines.append(f"loss at init {init_loss[0]:.4f}")
    if spec_name.startswith("seed001"):
        points = torch.tensor([[1.0, 2], [2, 3], [3, 4], [4, 4], [5, 3], [6, 2], [6, 4]])
        result.model.eval()
        with torch.no_grad():
            probabilities = torch.sigmoid(result.model(points)).squeeze(-1).tolist()
        lines.append("P(y=1) for the training points and [6,4]: " + " ".join(f"{p:.3f}" for p in probabilities))
    if result.plan.spec.task == "regression" and result.splits.test is not None:
        variance = result.splits.test.y.var(unbiased=False).item()
        lines.append(f"test target variance (mse of predicting the mean) {variance:.4f}")
    return lines


def measure(path: Path) -> None:
    document = json.loads(path.read_text())
    report = validate_document(document)
    if not report["valid"]:
        print(f"{path}: INVALID {report['errors']}")
        return
    spec = parse_spec(document)
    started = time.perf_counter()
    name = path.relative_to(ROOT.parent)
    if spec.sweep is not None:
        with tempfile.TemporaryDirectory() as folder:
            sweep = run_sweep(spec, document, Path(folder), device="cpu", local_base=path.parent)
        seconds = time.perf_counter() - started
        summary = sweep.summary
        print(f"{name}: {summary['status']} in {seconds:.1f}s, {summary['trials']} trials, {summary['outcomes']}")
        for trial in ranked(spec.sweep, sweep.trials):
            value = "-" if trial.value is None else f"{spec.sweep.metric} {trial.value:.4f}"
            print(f"    trial {trial.trial} {trial.params}: {trial.status}, {trial.epochs} epochs, {value}")
        return
    if spec.data.split.kfold:
        with tempfile.TemporaryDirectory() as folder:
            summary = train_run(plan_experiment(spec), folder=Path(folder), device="cpu").summary()
        seconds = time.perf_counter() - started
        spread = {k: f"{v:.4f} ± {summary['std'][k]:.4f}" for k, v in summary["mean"].items()}
        print(f"{name}: {summary['status']} in {seconds:.1f}s, {summary['kfold']} folds, mean ± std {spread}")
        return
    result = run_experiment(spec, device="cpu")
    seconds = time.perf_counter() - started
    shown = {k: round(v, 4) for k, v in result.final.items() if k != "lr"}
    print(f"{name}: {result.status} in {seconds:.1f}s, {result.epochs} epochs, {shown}")
    if result.failure or result.stop_reason:
        print(f"    {'failure' if result.failure else 'stopped'}: {result.failure or result.stop_reason}")
    for line in lesson_lines(result, spec.name):
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = [p.resolve() for p in args.specs] or sorted(ROOT.rglob("*.json"))
    for path in specs:
        with data_access(local_base=path.parent):  # file sources: next to the spec, as the CLI reads them
            measure(path)


if __name__ == "__main__":
    main()
