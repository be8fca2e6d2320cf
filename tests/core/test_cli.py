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
print(result.exit_code, "torch" in sys.modules, "sklearn" in sys.modules)
"""


def imports_after(args: list[str], data_dir: Path) -> tuple[int, bool, bool]:
    env = {"TRAINYARD_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1] == "True", out[2] == "True"


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["keys", "list"], ["keys", "create", "--help"]])
def test_help_and_keys_do_not_import_torch(args: list[str], tmp_path: Path) -> None:
    code, torch_loaded, sklearn_loaded = imports_after(args, tmp_path)
    assert code == 0
    assert not torch_loaded and not sklearn_loaded


def test_validate_imports_torch_only_when_it_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"data": {"source": {"type": "builtin", "name": "iris"}}}))
    code, torch_loaded, _ = imports_after(["validate", str(spec)], tmp_path)
    assert code == 0 and torch_loaded


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
