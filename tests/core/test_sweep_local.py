"""`trainyard train` on a sweep spec: each trial trains locally in a run folder of its own
(``trial-000/``, ...), the parent folder's summary names the best one, the table ranks them
with the best marked; ASHA prunes poor trials at rungs; ``--jobs 2`` trains in two processes."""

import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import cli.main
from cli.main import app
from core import run_folder
from core.sweep.local import STORAGE, STUDY

ROOT = Path(__file__).resolve().parents[2]
LR_SWEEP = ROOT / "examples" / "lr_sweep.json"
GRID = json.loads(LR_SWEEP.read_text())["sweep"]["parameters"]["optimizer.lr"]


def train(spec: Path, out: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["train", str(spec), "--out", str(out), "--device", "cpu", *args])


def variant(tmp_path: Path, **changes: Any) -> Path:
    """A copy of the lr sweep example with top-level fields replaced."""
    document = {**json.loads(LR_SWEEP.read_text()), **changes}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(document))
    return path


def trial_folders(out: Path) -> list[Path]:
    return sorted(path for path in out.iterdir() if path.is_dir() and path.name.startswith("trial-"))


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def overlapping(out: Path) -> bool:
    """Whether two trials of the sweep in ``out`` trained at the same time (the study's record)."""
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / STORAGE}")
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def val_losses(folder: Path) -> list[float]:
    points = map(json.loads, (folder / run_folder.METRICS).read_text().splitlines())
    return [p["value"] for p in points if p["name"] == "val_loss"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """Trials in this process with one intra-op thread: on a shared 2-core machine torch's two
    made these few-millisecond steps several times slower (the worker processes of --jobs 2 take
    one core each anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The lr example swept one trial after another, its summary as `--json` printed it."""
    out = tmp_path_factory.mktemp("lr") / "sweep"
    result = train(LR_SWEEP, out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_the_lr_sweep_trains_one_folder_per_trial_and_marks_the_best(tmp_path: Path) -> None:
    result = train(LR_SWEEP, tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    folders = trial_folders(tmp_path / "sweep")
    assert [f.name for f in folders] == [f"trial-{n:03d}" for n in range(len(GRID))]
    for folder in folders:
        assert (folder / run_folder.WEIGHTS).is_file() and read(folder / run_folder.SUMMARY)["status"] == "succeeded"
        assert not (folder / run_folder.CHECKPOINT).exists()
    assert sorted(read(f / run_folder.SPEC)["optimizer"]["lr"] for f in folders) == sorted(GRID)
    summary = read(tmp_path / "sweep" / run_folder.SUMMARY)
    best = summary["best"]
    assert summary["status"] == "succeeded" and summary["trials"] == len(GRID)
    assert best["run"] == f"trial-{best['trial']:03d}" and best["params"]["optimizer.lr"] in GRID
    assert read(tmp_path / "sweep" / run_folder.SPEC)["sweep"]["method"] == "grid"
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(GRID)
    assert "★ best" in rows[0] and sum("★ best" in row for row in rows) == 1, "the best row first, marked once"
    cells = [cell.strip() for cell in rows[0].strip("│").split("│")]
    assert cells[0] == f"{best['trial']} ★ best" and float(cells[3]) == best["params"]["optimizer.lr"]
    assert float(cells[4]) == pytest.approx(best["val_loss"], abs=1e-4)


def test_json_names_the_trial_with_the_lowest_val_loss(sequential: tuple[Path, dict[str, Any]]) -> None:
    out, summary = sequential
    folders = trial_folders(out)
    lowest = min(folders, key=lambda f: min(val_losses(f)))
    assert summary["best"]["run"] == lowest.name
    assert summary["best"]["val_loss"] == min(val_losses(lowest))
    finals = {f.name: read(f / run_folder.SUMMARY)["val_loss"] for f in folders}
    assert min(finals, key=finals.__getitem__) == lowest.name
    assert summary["epochs"] == sum(read(f / run_folder.SUMMARY)["epochs"] for f in folders)
    assert summary["out"] == str(out) and summary["outcomes"] == {"succeeded": len(GRID)}


def test_a_random_sweep_draws_its_log_uniform_lr_inside_the_range(tmp_path: Path) -> None:
    sweep = {
        "method": "random",
        "trials": 4,
        "parameters": {"optimizer.lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-1}},
    }
    result = train(variant(tmp_path, epochs=1, sweep=sweep), tmp_path / "sweep", "--json")
    assert result.exit_code == 0, result.output
    folders = trial_folders(tmp_path / "sweep")
    lrs = [read(f / run_folder.SPEC)["optimizer"]["lr"] for f in folders]
    assert len(folders) == 4 and len(set(lrs)) == 4
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs), lrs
    assert json.loads(result.stdout)["best"]["params"]["optimizer.lr"] in lrs


def test_asha_prunes_the_poor_trials_at_a_rung(tmp_path: Path) -> None:
    lrs = [0.5, 0.1, 0.01, 1.0, 1e-4, 1e-6]  # good ones first: the later ones meet them at the rungs
    sweep = {
        "method": "grid",
        "parameters": {"optimizer.lr": lrs},
        "max_concurrent": 1,
        "early_stop": {"type": "asha", "grace_epochs": 1, "reduction_factor": 3},
    }
    epochs = 12
    result = train(variant(tmp_path, epochs=epochs, sweep=sweep), tmp_path / "sweep", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    trials = {f.name: read(f / run_folder.SUMMARY) for f in trial_folders(tmp_path / "sweep")}
    pruned = [t for t in trials.values() if t["status"] == "pruned"]
    assert len(trials) == len(lrs) and pruned
    assert all(t["stop_reason"].startswith("pruned by asha at rung ") and t["epochs"] < epochs for t in pruned)
    assert summary["outcomes"]["pruned"] == len(pruned)
    best = trials[summary["best"]["run"]]
    assert best["status"] == "succeeded" and best["epochs"] == epochs
    assert summary["epochs"] == sum(t["epochs"] for t in trials.values()) < len(lrs) * epochs
    tiny = next(
        t for f, t in trials.items() if read(tmp_path / "sweep" / f / run_folder.SPEC)["optimizer"]["lr"] == 1e-6
    )
    assert tiny["status"] == "pruned", "an lr of 1e-6 barely moves and is stopped"


def test_two_jobs_train_the_same_trials_in_two_processes(
    sequential: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker processes report each epoch back: every trial's bar ends full, labelled with its lr."""
    bars = Console(file=io.StringIO(), width=200)
    monkeypatch.setattr(cli.main, "err_console", bars)
    result = train(LR_SWEEP, tmp_path / "sweep", "--jobs", "2")
    assert result.exit_code == 0, result.output
    folders = trial_folders(tmp_path / "sweep")
    assert len(folders) == len(trial_folders(sequential[0])) == len(GRID)
    lrs = [read(f / run_folder.SPEC)["optimizer"]["lr"] for f in folders]
    assert sorted(lrs) == sorted(GRID) and all((f / run_folder.WEIGHTS).is_file() for f in folders)
    assert overlapping(tmp_path / "sweep") and not overlapping(sequential[0])
    drawn = bars.file.getvalue()
    epochs = read(LR_SWEEP)["epochs"]
    for number, lr in enumerate(lrs):
        line = next(line for line in drawn.splitlines() if line.startswith(f"trial {number} lr={lr:.4g} "))
        assert f"{epochs}/{epochs}" in line and "val_loss" in line
    summary = read(tmp_path / "sweep" / run_folder.SUMMARY)
    assert summary["best"]["params"] == sequential[1]["best"]["params"]
    assert math.isclose(summary["best"]["val_loss"], sequential[1]["best"]["val_loss"], rel_tol=1e-3)


def test_a_sweep_whose_every_trial_fails_exits_1(tmp_path: Path) -> None:
    """Unscaled diabetes targets with SGD diverge in the first epoch at either lr."""
    document = read(ROOT / "examples" / "diabetes_target_standardize.json")
    del document["data"]["target_preprocess"]
    document.update(epochs=2, sweep={"method": "grid", "parameters": {"optimizer.lr": [0.01, 0.02]}})
    (tmp_path / "spec.json").write_text(json.dumps(document))
    result = train(tmp_path / "spec.json", tmp_path / "sweep")
    assert result.exit_code == 1, result.output
    summary = read(tmp_path / "sweep" / run_folder.SUMMARY)
    assert summary["status"] == "failed" and summary["best"] is None and summary["outcomes"] == {"failed": 2}
    assert all(
        read(f / run_folder.SUMMARY)["failure"].startswith("diverged") for f in trial_folders(tmp_path / "sweep")
    )
