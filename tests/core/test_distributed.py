"""One run on several devices (gloo ranks on the CPU): two ranks reach the weights one process
reaches with the same global batch; a rank that dies is named; a 2-rank `trainyard train` killed
with SIGKILL leaves no rank behind and resumes from its checkpoint to the weights of an
uninterrupted 2-rank run; torchrun starts the same entry point as ranks of its own."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from core.engine import run as engine_run
from core.engine.distributed import RankFailed, RankLost, Ranks, _lost_or_failed, launched, process_group
from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import prepare_splits, run_experiment, train_run
from core.errors import SpecInvalid
from core.spec.schema import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def document(devices: int, **overrides: Any) -> dict[str, Any]:
    """A digits MLP without dropout or batch norm (their randomness and batch statistics are each
    rank's own), SGD at a constant lr; 1078 training rows in batches of 63 end with a batch of 7,
    which two ranks split 4 + 3 (their losses weighted 8/7 and 6/7)."""
    return {
        "name": f"ranks-{devices}",
        "seed": 0,
        "epochs": 3,
        "data": {"source": {"type": "builtin", "name": "digits"}, "batch_size": 63},
        "model": {"type": "mlp", "hidden": [32], "dropout": 0.0},
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"type": "constant"},
        "regularization": {"l2": 0.0001, "early_stopping": None},
        "diagnostics": {"activations": False, "gradients": True, "every_n_steps": 20},
        "resources": {"devices": devices},
        **overrides,
    }


@pytest.fixture(autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # one for each rank
    yield
    torch.set_num_threads(threads)


def test_two_ranks_reach_the_weights_of_one(tmp_path: Path) -> None:
    alone = train_run(plan_experiment(parse_spec(document(1))), folder=tmp_path / "one", device="cpu")
    ranks = train_run(plan_experiment(parse_spec(document(2))), folder=tmp_path / "two", device="cpu")
    assert ranks.status == alone.status == "succeeded"
    assert ranks.summary()["devices"] == 2 and "devices" not in alone.summary()
    expected = alone.model.state_dict()
    for name, tensor in ranks.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-5, msg=name)  # summation order only
    for name in ("train_loss", "train_accuracy", "val_loss", "test_accuracy"):
        assert ranks.final[name] == pytest.approx(alone.final[name], abs=1e-5), name
    gradients = [p for p in ranks.history.points if p.name.startswith("grad_norm/")]
    assert gradients, "rank 0 measures the all-reduced gradients"
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len({json.loads(line)["step"] for line in lines if '"train_loss"' in line}) == 3  # rank 0 alone wrote


def test_a_rank_takes_its_share_of_a_batch_weighted_by_its_size() -> None:
    index = torch.arange(5)
    assert Ranks(0, 2).shard(index)[0].tolist() == [0, 1, 2] and Ranks(0, 2).shard(index)[1] == pytest.approx(1.2)
    assert Ranks(1, 2).shard(index)[0].tolist() == [3, 4] and Ranks(1, 2).shard(index)[1] == pytest.approx(0.8)
    part, weight = Ranks(2, 3).shard(torch.arange(2))  # fewer rows than ranks: a placeholder row, weight 0
    assert part.tolist() == [0] and weight == 0.0
    assert Ranks().shard(index) == (index, 1.0)


def _join_then_exit(ranks: Ranks) -> None:
    with process_group(ranks, torch.device("cpu")):
        os._exit(3)


def test_a_rank_that_dies_is_named() -> None:
    dying = pytest.raises(RankLost, match=r"rank 1 exited with 3 \(of 2 ranks\)")
    with dying, launched(2, _join_then_exit, ()) as ranks, process_group(ranks, torch.device("cpu")):
        dist.all_reduce(torch.ones(1))


def test_the_devices_must_be_the_launchers_processes(tmp_path: Path) -> None:
    with pytest.raises(SpecInvalid) as caught:
        train_run(plan_experiment(parse_spec(document(2))), folder=tmp_path, ranks=Ranks(0, 3))
    (error,) = caught.value.errors
    assert error.pointer == "/resources/devices" and "started 3 processes" in error.message


def trainyard(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, **popen)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def children_of(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in found.read_text().split()] if found.exists() else []


def test_a_two_rank_run_killed_mid_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document(2, epochs=8)))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRAINYARD_DATA_DIR": str(tmp_path / "data"),
        "TRAINYARD_CHECKPOINT_MIN_INTERVAL_S": "0",
        "OMP_NUM_THREADS": "1",
    }
    straight = trainyard("train", str(spec), "--out", str(tmp_path / "straight"), "--json", env=env)
    assert straight.wait(timeout=300) == 0

    killed = trainyard("train", str(spec), "--out", str(tmp_path / "killed"), "--json", env=env)
    checkpoint = tmp_path / "killed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not (checkpoint.exists() and json.loads(checkpoint.read_text())["epoch"] >= 3):
        assert killed.poll() is None and time.monotonic() < deadline, "no checkpoint at epoch 3"
        time.sleep(0.05)
    ranks = children_of(killed.pid)
    assert ranks, "rank 1 runs in a child process"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    deadline = time.monotonic() + 30  # rank 1 sees rank 0 gone and stops
    while any(
        Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in ranks
    ):
        assert time.monotonic() < deadline, "a rank outlived rank 0"
        time.sleep(0.2)

    resumed = trainyard(
        "train", str(spec), "--out", str(tmp_path / "killed"), "--resume", "--json", env=env, stdout=subprocess.PIPE
    )
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    summary = json.loads(out)
    assert summary["devices"] == 2 and summary["epochs"] == 8
    expected = weights(tmp_path / "straight")
    for name, tensor in weights(tmp_path / "killed").items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6, msg=name)


def test_torchrun_starts_the_same_entry_point_as_its_ranks(tmp_path: Path) -> None:
    """Several machines start `trainyard train` under torchrun's rendezvous; here two ranks on one."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document(2, epochs=2)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRAINYARD_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"]
    command = [*torchrun, "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "-m", "cli.main"]
    done = subprocess.run(
        [*command, "train", str(spec), "--out", str(tmp_path / "torchrun"), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (summary,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]  # rank 0's alone
    assert summary["devices"] == 2 and summary["status"] == "succeeded"
    launched_here = train_run(plan_experiment(parse_spec(document(2, epochs=2))), folder=tmp_path / "here")
    expected = launched_here.model.state_dict()
    for name, tensor in weights(tmp_path / "torchrun").items():
        gap = (tensor - expected[name]).abs().max().item()
        assert gap <= 1e-5, f"{name}: {gap}"  # the same ranks, launched by torchrun or by the run itself


class StopAtStep(Callback):
    """Rank 0's stop between two sync points (as the time limit and a cancel take it)."""

    def on_step_end(self, state: State) -> None:
        if state.step == 3:
            state.stop("stopped by the test", status="cancelled")


def test_the_ranks_stop_together_when_rank_0_stops_between_sync_points(tmp_path: Path) -> None:
    started = time.monotonic()
    plan = plan_experiment(parse_spec(document(2, epochs=50)))
    result = train_run(plan, folder=tmp_path / "stopped", callbacks=[StopAtStep()])
    assert result.status == "cancelled" and result.epochs == 1, result.summary()
    limited = train_run(plan_experiment(parse_spec(document(2, epochs=500, max_runtime_s=1.0))), folder=tmp_path / "t")
    assert limited.status == "failed" and "time limit" in (limited.failure or ""), limited.summary()
    assert time.monotonic() - started < 45, "a rank waited for the others"  # the join timeout is 60 s


def test_a_rank_that_raises_is_named_with_its_error(tmp_path: Path) -> None:
    """Batch norm on a rank whose share of the last batch is one row raises there only."""
    doc = document(2, epochs=1, model={"type": "mlp", "hidden": [16], "batch_norm": True, "dropout": 0.0})
    spec = parse_spec(doc)
    rows = len(prepare_splits(spec, plan_experiment(spec).data).train)
    doc["data"]["batch_size"] = next(size for size in range(5, 40) if rows % size == 3)  # last batch: 2 + 1 rows
    with pytest.raises(RankFailed, match=r"rank 1: ValueError: Expected more than 1 value per channel"):
        train_run(plan_experiment(parse_spec(doc)), folder=tmp_path)


class Reports:
    def __init__(self, *items: tuple[int, str, bool]) -> None:
        self.items = list(items)

    def empty(self) -> bool:
        return not self.items

    def get(self) -> tuple[int, str, bool]:
        return self.items.pop(0)


def test_a_ranks_report_says_whether_another_attempt_may_succeed() -> None:
    oom = _lost_or_failed([], Reports((1, "out of memory on cuda:1: ...", True)), 2)
    assert isinstance(oom, RankLost) and str(oom) == "rank 1: out of memory on cuda:1: ... (of 2 ranks)"
    error = _lost_or_failed([], Reports((1, "ValueError: bad", False), (2, "out of memory", True)), 3)
    assert isinstance(error, RankFailed) and "rank 1: ValueError: bad; rank 2: out of memory" in str(error)
    assert _lost_or_failed([], Reports(), 2) is None


def test_a_machine_without_the_devices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(SpecInvalid) as caught:
            engine_run._check_devices(2, torch.device(device))
        assert caught.value.errors[0].pointer == "/resources/devices"
    engine_run._check_devices(4, torch.device("cpu"))  # gloo ranks: as many as asked
    with pytest.raises(ValueError, match="use train_run"):
        run_experiment(parse_spec(document(2)))


def test_a_sweep_is_not_trained_by_torchruns_ranks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each rank would train every trial into the same folders: a sweep's trials are runs of their own."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(app, ["train", str(ROOT / "examples" / "lr_sweep.json"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "torchrun's ranks train one run together" in result.output
    assert not any(tmp_path.iterdir())
