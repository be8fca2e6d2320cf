"""The command line starts fast: `--help` and `keys` never import torch (the engine loads when a
command that trains or validates runs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
