"""``precision``: bf16 autocasts training and evaluation on the CPU and trains digits to fp32's
accuracy; fp16 (autocast + GradScaler, CUDA only) is refused on the CPU at ``/precision`` by
``run_experiment``, `trainyard validate` and `trainyard train`; bf16 is refused on a CUDA device
without bfloat16. fp16's GradScaler is part of the checkpoint, and a step it skips for inf
gradients is neither divergence nor a gradient the diagnostics record. (fp16 runs on the CPU here
only with the device check patched out: CPU autocast and GradScaler work, the service just does
not offer them.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from core.engine import precision, run
from core.engine.checkpoint import Checkpointer, load_checkpoint
from core.engine.events import Callback, State
from core.engine.precision import check_precision
from core.engine.run import run_experiment
from core.errors import SpecInvalid
from core.spec.schema import parse_spec
from tests.core.helpers import StopAfter, spec_document

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"activations": False, "gradients": False}


pytestmark = pytest.mark.usefixtures("one_thread")


class OutputDtypes(Callback):
    """The dtype of the model's output in training and in evaluation (a forward hook)."""

    def __init__(self) -> None:
        self.seen: dict[bool, set[torch.dtype]] = {True: set(), False: set()}

    def on_fit_start(self, state: State) -> None:
        def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self.seen[module.training].add(output.dtype)

        state.model.register_forward_hook(hook)


def test_bf16_trains_digits_to_fp32s_accuracy_on_the_cpu() -> None:
    document = json.loads((ROOT / "examples" / "digits_mlp.json").read_text())
    results = {}
    for name in ("fp32", "bf16"):
        dtypes = OutputDtypes()
        spec = parse_spec({**document, "epochs": 10, "precision": name, "diagnostics": QUIET})
        results[name] = run_experiment(spec, device="cpu", callbacks=[dtypes])
        expected = torch.bfloat16 if name == "bf16" else torch.float32
        assert dtypes.seen == {True: {expected}, False: {expected}}, "training and evaluation autocast alike"
    fp32, bf16 = results["fp32"], results["bf16"]
    assert bf16.summary()["precision"] == "bf16" and fp32.summary()["precision"] == "fp32"
    assert fp32.final["test_accuracy"] > 0.9
    assert abs(bf16.final["test_accuracy"] - fp32.final["test_accuracy"]) <= 0.01
    assert bf16.history.series("train_loss") != fp32.history.series("train_loss")  # it did compute in bf16


def test_fp16_is_refused_on_the_cpu_before_training() -> None:
    with pytest.raises(SpecInvalid) as raised:
        run_experiment(parse_spec(spec_document(precision="fp16")), device="cpu")
    (error,) = raised.value.errors
    assert error.pointer == "/precision"
    assert error.message == "fp16 (float16 autocast with a GradScaler) needs a CUDA device; this run's device is cpu"
    assert "bf16" in error.hint


def test_the_cli_refuses_fp16_on_the_cpu(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_document(precision="fp16")))
    validated = CliRunner().invoke(app, ["validate", str(spec), "--json", "--device", "cpu"])
    assert validated.exit_code == 2
    (error,) = json.loads(validated.output)["errors"]
    assert error["pointer"] == "/precision" and "needs a CUDA device" in error["message"]
    trained = CliRunner().invoke(app, ["train", str(spec), "--json", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 2
    (error,) = json.loads(trained.output)["errors"]
    assert error["pointer"] == "/precision"
    assert not (tmp_path / "run").exists()
    spec.write_text(json.dumps(spec_document(precision="bf16")))
    assert CliRunner().invoke(app, ["validate", str(spec), "--json", "--device", "cpu"]).exit_code == 0


def test_bf16_is_refused_on_a_cuda_device_without_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(SpecInvalid) as raised:
        check_precision("bf16", torch.device("cuda"))
    (error,) = raised.value.errors
    assert error.pointer == "/precision" and "bf16 (bfloat16 autocast) needs a device that computes" in error.message
    check_precision("fp16", torch.device("cuda"))  # a CUDA device does fp16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    check_precision("bf16", torch.device("cuda"))


def fp16_on_the_cpu(monkeypatch: pytest.MonkeyPatch, init_scale: float = 2.0**16) -> None:
    """Let fp16 train on the CPU (the device check off), its GradScaler starting at ``init_scale``."""
    monkeypatch.setattr(run, "check_precision", lambda *args: None)
    scaler = torch.amp.GradScaler

    def scaler_from(device: str) -> torch.amp.GradScaler:
        return scaler(device, init_scale=init_scale)

    monkeypatch.setattr(precision.torch.amp, "GradScaler", scaler_from)


def test_the_grad_scaler_survives_a_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fp16_on_the_cpu(monkeypatch)
    spec = parse_spec(spec_document(epochs=4, precision="fp16", diagnostics=QUIET))
    straight = run_experiment(spec, device="cpu", callbacks=[Checkpointer(tmp_path / "straight", 1, 0.0)])
    stopped = run_experiment(spec, device="cpu", callbacks=[Checkpointer(tmp_path / "stopped", 1, 0.0), StopAfter(2)])
    assert stopped.epochs == 2
    snapshot = load_checkpoint(tmp_path / "stopped")
    assert snapshot["grad_scaler"]["_growth_tracker"] == stopped.steps == 18  # steps since the scale last changed
    assert snapshot["grad_scaler"]["scale"] == 2.0**16
    resumed = run_experiment(
        spec, device="cpu", resume_from=snapshot, callbacks=[Checkpointer(tmp_path / "resumed", 1, 0.0)]
    )
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, straight.model.state_dict()[name]), name
    at_end = load_checkpoint(tmp_path / "straight")["grad_scaler"]
    assert load_checkpoint(tmp_path / "resumed")["grad_scaler"] == at_end
    assert at_end["_growth_tracker"] == 36


def test_steps_the_grad_scaler_skips_are_not_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scale of 2^30 overflows fp16's gradients: the GradScaler skips those steps, halving the
    scale each time, until the gradients fit. The run trains on; the skipped steps' gradient norms
    (inf) are not recorded, the others are."""
    fp16_on_the_cpu(monkeypatch, init_scale=2.0**30)
    every_step = {"activations": False, "gradients": True, "every_n_steps": 1}
    result = run_experiment(parse_spec(spec_document(epochs=4, precision="fp16", diagnostics=every_step)), device="cpu")
    assert result.status == "succeeded" and result.failure is None
    losses = result.history.series("train_loss")
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    norms = [p for p in result.history.points if p.name == "grad_norm/1_dense.weight"]
    assert all(torch.isfinite(torch.tensor([p.value for p in norms])))
    steps = {p.step for p in norms}
    assert 0 not in steps and result.steps - 1 in steps, "the skipped first steps are left out, later ones kept"
    assert result.steps - len(norms) >= 12, "the scale halves on each skip, 2^30 → 2^18 before fp16 holds them"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_mixed_precision_trains_digits_to_fp32s_accuracy_on_cuda(name: str) -> None:
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not compute in bfloat16")
    document = json.loads((ROOT / "examples" / "digits_mlp.json").read_text())
    results = {
        p: run_experiment(parse_spec({**document, "epochs": 10, "precision": p}), device="cuda") for p in ("fp32", name)
    }
    assert results[name].summary()["precision"] == name and results[name].summary()["step"] == "compiled"
    assert abs(results[name].final["test_accuracy"] - results["fp32"].final["test_accuracy"]) <= 0.01
