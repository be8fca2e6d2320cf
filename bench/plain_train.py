"""The hand-written PyTorch training that `trainyard train` is measured against end to end
(``python bench/engine_overhead.py --end-to-end``): the digits spec's splits, prepared and initialised
as the engine prepares them (set-up, which the per-epoch figure cancels: it is the difference of a
long and a short run), then the bench's plain loop with the data on the device and a validation
pass every epoch. Prints the last epoch's metrics as JSON, to compare with the CLI's summary.

    python bench/plain_train.py --epochs 45 [--hidden 1024 1024] [--device cpu]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.end_to_end import HIDDEN, flat, spec
from bench.engine_overhead import PlainLoop
from core.engine.plan import plan_experiment
from core.engine.run import pick_device, prepare_splits
from core.nn.models import build_model, initialise
from core.spec.schema import parse_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--hidden", type=int, nargs="+", default=HIDDEN)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if present, as the CLI)")
    args = parser.parse_args()
    experiment = parse_spec(spec(hidden=args.hidden, epochs=args.epochs))
    plan = plan_experiment(experiment)
    device = pick_device(args.device)
    torch.manual_seed(experiment.seed)  # as run_experiment: the same splits and initial weights
    splits = prepare_splits(experiment, plan.data).to(device)
    model, _ = build_model(experiment.model, plan.input_shape or plan.data.sample_shape, plan.outputs)
    initialise(model, experiment.model.init)
    weights = [p.detach().clone() for p in model.parameters()]
    train, validation = flat(splits.train), flat(splits.validation)  # type: ignore[arg-type]
    loop = PlainLoop(train, args.hidden, weights, device)
    val_loss = val_accuracy = float("nan")
    for _ in range(args.epochs):
        loop.epoch()
        val_loss, val_accuracy = loop.validate(validation)
    last = {"train_loss": loop.timings.train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
    print(json.dumps({"epochs": args.epochs, **last}))


if __name__ == "__main__":
    main()
