"""The command line starts fast: `--help` and `keys` never import torch (the engine loads when a
command that trains or validates runs); `train --resume` continues a stopped run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.engine.checkpoint import CheckpointPolicy
from core.engine.events import Callback
from core.engine.plan import plan_experiment
from core.engine.run import train_run
from core.spec.schema import parse_spec

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from typer.testing import CliRunner
from cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code, " ".join(sys.modules))
"""


def imports_after(args: list[str], data_dir: Path) -> tuple[int, set[str]]:
    """The exit code of the command and the modules loaded once it ran (in a fresh interpreter)."""
    env = {"TRAINYARD_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]
    code, modules = out.split(" ", 1)
    return int(code), set(modules.split())


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["keys", "list"], ["keys", "create", "--help"]])
def test_help_and_keys_do_not_import_torch(args: list[str], tmp_path: Path) -> None:
    code, modules = imports_after(args, tmp_path)
    assert code == 0
    assert "torch" not in modules and "sklearn" not in modules


def test_validate_imports_torch_only_when_it_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"data": {"source": {"type": "builtin", "name": "iris"}}}))
    code, modules = imports_after(["validate", str(spec)], tmp_path)
    assert code == 0 and "torch" in modules


COMPILER = ("torch._dynamo", "torch._inductor", "sympy")  # PyTorch's compiler stack: seconds of start-up


def test_validate_counts_flops_without_the_compiler_stack(tmp_path: Path) -> None:
    """The layer table (conv, norm, pooling, recurrent, dense FLOPs) and kornia augmentations are
    checked without loading torch._dynamo, kornia or scikit-learn beyond the digits loader."""
    layers = [
        {"type": "conv", "filters": 4, "padding": "same"},
        {"type": "batch_norm"},
        {"type": "activation"},
        {"type": "max_pool"},
        {"type": "to_sequence"},
        {"type": "lstm", "hidden": 8},
        {"type": "dense", "units": 10},
    ]
    document = {
        "data": {"source": {"type": "builtin", "name": "digits"}, "augment": [{"type": "rotate", "degrees": 10}]},
        "model": {"type": "sequential", "layers": layers},
    }
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document))
    code, modules = imports_after(["validate", str(spec)], tmp_path)
    assert code == 0
    assert "sklearn.datasets" in modules  # loading the bundled set is the one real cost
    needless = {*COMPILER, "kornia", "sklearn.model_selection"} & modules
    assert not needless, f"validation loads {sorted(needless)}"


def test_validate_of_a_text_spec_loads_no_compiler_stack(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"data": {"source": {"type": "builtin", "name": "toy_text"}}, "model": {"type": "rnn"}}))
    code, modules = imports_after(["validate", str(spec)], tmp_path)
    assert code == 0
    assert not set(COMPILER) & modules, f"validation loads {sorted(set(COMPILER) & modules)}"


def test_validate_of_a_file_source_imports_no_scikit_learn(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    document = {
        "task": "binary",
        "data": {"source": {"type": "file", "path": "rows.csv", "format": "csv", "target": "y"}},
        "model": {"type": "mlp", "hidden": [8]},
    }
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document))
    code, modules = imports_after(["validate", str(spec)], tmp_path)
    assert code == 0
    needless = {*COMPILER, "sklearn", "scipy"} & modules
    assert not needless, f"validation loads {sorted(needless)}"


class StopAfter(Callback):
    def on_epoch_end(self, state) -> None:
        if state.epoch == 2:
            state.stop("stopped by the test", status="cancelled")


def test_train_resume_continues_a_stopped_run_from_its_checkpoint(tmp_path: Path) -> None:
    document = {
        "epochs": 4,
        "data": {"source": {"type": "builtin", "name": "iris"}},
        "model": {"type": "mlp", "hidden": [8], "dropout": 0.0},
        "regularization": {"early_stopping": None},
    }
    (tmp_path / "spec.json").write_text(json.dumps(document))
    plan = plan_experiment(parse_spec(document))
    straight = train_run(plan, folder=tmp_path / "straight", device="cpu")
    policy = CheckpointPolicy(every_n_epochs=1, min_interval_s=0.0)
    stopped = train_run(plan, folder=tmp_path / "run", device="cpu", callbacks=[StopAfter()], checkpoints=policy)
    assert stopped.status == "cancelled" and stopped.epochs == 2
    args = ["train", str(tmp_path / "spec.json"), "--json", "--out", str(tmp_path / "run"), "--resume"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 4 and summary["val_loss"] == straight.final["val_loss"]

    def points(folder: Path) -> list[tuple[str, int, int]]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return sorted((p["name"], p["step"], p["epoch"]) for p in map(json.loads, lines))

    assert points(tmp_path / "run") == points(tmp_path / "straight"), "epochs 1-2 kept, 3-4 written once"
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_train_names_the_lesson_in_its_verdicts(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "zero_init.json"
    shown = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "table")], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "symmetric_units" in shown.output and "/model/init" in shown.output  # the verdict and the change to try
    scripted = CliRunner().invoke(app, ["train", str(spec), "--json", "--out", str(tmp_path / "json")])
    verdicts = json.loads(scripted.stdout)["verdicts"]
    symmetric = next(v for v in verdicts if v["code"] == "symmetric_units")
    assert symmetric["severity"] == "error" and symmetric["suggestion"][0]["path"].startswith("/model/init")
