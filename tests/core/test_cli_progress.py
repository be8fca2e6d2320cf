"""`trainyard train`'s progress bar: it shows each epoch's rounded metrics, and on a terminal it
redraws itself at most about once a second (a redraw costs milliseconds of CPU that the training
would otherwise have)."""

import io
import time

from rich.console import Console

from cli.main import EpochProgress


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120)


def test_the_bar_shows_the_epoch_and_its_rounded_metrics() -> None:
    console = terminal()
    with EpochProgress(3, disable=False, console=console) as progress:
        progress.update(None, 2, {"train_loss": 0.123456, "val_accuracy": 0.9, "lr": 0.001})
    drawn = console.file.getvalue()
    assert "training" in drawn and "2/3" in drawn
    assert "train_loss 0.1235" in drawn and "val_accuracy 0.9000" in drawn
    assert "lr" not in drawn  # only the losses and accuracies are shown


def test_a_k_fold_run_gets_one_bar_per_fold() -> None:
    console = terminal()
    with EpochProgress(4, disable=False, console=console) as progress:
        progress.update(1, 4, {"val_loss": 0.5})
        progress.update(2, 1, {"val_loss": 0.75})
    drawn = console.file.getvalue()
    assert "fold 1" in drawn and "4/4" in drawn and "fold 2" in drawn and "1/4" in drawn


def test_on_a_terminal_the_bar_redraws_itself_at_most_about_once_a_second() -> None:
    progress = EpochProgress(3, disable=False, console=terminal())
    live = progress.progress.live
    redraws = []
    draw = live.refresh
    live.refresh = lambda: (redraws.append(time.monotonic()), draw())  # type: ignore[method-assign]
    with progress:
        progress.update(None, 1, {"train_loss": 0.5})
        time.sleep(2.2)
    assert len(redraws) <= 5, f"{len(redraws)} redraws in 2.2 s"  # 10 a second would be ~22


def test_a_disabled_bar_draws_nothing() -> None:
    console = terminal()
    with EpochProgress(3, disable=True, console=console) as progress:
        progress.update(None, 1, {"train_loss": 0.5})
    assert console.file.getvalue() == ""
