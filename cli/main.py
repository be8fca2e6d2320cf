"""The `trainyard` command line: validate and train specs locally, submit them to a service, predict
from a run folder. Commands import the engine (torch) when they run, so `--help` and `keys` start fast."""

import json
import os
import signal
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import SpecError, SpecInvalid

if TYPE_CHECKING:
    from core.engine.events import State
    from core.spec.schema import ExperimentSpec
    from core.spec.sweep import SweepSpec
    from core.sweep.outcome import TrialOutcome

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Trainyard: JSON experiment specs → trained models.",
)
out_console = Console()
err_console = Console(stderr=True)
INVALID = 2
FOLD_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
SHOWN = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # per epoch, on the progress bar


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        err_console.print(f"[red]cannot read {path}: {exc}[/red]")
        raise typer.Exit(INVALID) from None


def _print_errors(errors: list[SpecError]) -> None:
    for error in errors:
        hint = f" [dim]({error.hint})[/dim]" if error.hint else ""
        err_console.print(f"[red]{error.pointer or '/'}[/red]: {error.message}{hint}")


def _layer_table(report: dict[str, Any]) -> Table:
    shape = report.get("model_input_shape") or report["input_shape"]
    table = Table(title=f"{report['spec']['name']}: input {shape} → {report['outputs']} outputs")
    for column in ("layer", "spec pointer", "output shape", "params", "FLOPs"):
        table.add_column(column, justify="right" if column in ("params", "FLOPs") else "left")
    for row in report["layers"]:
        table.add_row(
            row["name"],
            row["pointer"],
            "×".join(map(str, row["output_shape"])),
            f"{row['params']:,}",
            f"{row['flops']:,}",
        )
    table.caption = (
        f"{report['params']:,} parameters, {report['flops_per_sample']:,} FLOPs/sample, "
        f"~{report['memory_estimate_bytes'] / 2**20:.1f} MiB to train"
    )
    return table


DEVICE_HELP = "cpu, cuda, cuda:1 (default: cuda if present)"


@app.command()
def validate(
    spec_path: Annotated[Path, typer.Argument(help="the experiment spec (JSON)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    device: Annotated[str | None, typer.Option(help=f"the device it would train on: {DEVICE_HELP}")] = None,
) -> None:
    """Validate a spec: errors with JSON pointers, or the resolved spec and its layer table. What the
    device (this machine's, as `train` would pick it) cannot do is an error too (its precision)."""
    from core.data.files import data_access
    from core.engine.plan import validate_document
    from core.engine.run import pick_device

    with data_access(local_base=spec_path.parent):  # file sources: relative to the spec file
        report = validate_document(_read_json(spec_path), device=pick_device(device))
    if as_json:
        out_console.print_json(json.dumps(report))
    elif report["valid"]:
        out_console.print(_layer_table(report))
        if report["sweep"]:
            sweep = report["sweep"]
            out_console.print(
                f"sweep ({sweep['method']}, {sweep['metric']} {sweep['mode']}): {sweep['trials']} trials, "
                f"{sweep['epochs_x_samples']:,} epochs × samples in all"
            )
    else:
        _print_errors([SpecError(**e) for e in report["errors"]])
    raise typer.Exit(0 if report["valid"] else INVALID)


class EpochProgress:
    """Rich progress bars over epochs, one per training (per fold of a k-fold run), showing the
    latest per-epoch losses and accuracies rounded; on stderr (or ``console``), so --json output
    stays clean. It redraws itself once a second: it changes once an epoch (and its elapsed time
    once a second), and each redraw on a terminal costs milliseconds the training would have
    (rich's default of 10 a second took ~3% of a 0.4 s digits epoch, bench/end_to_end.py)."""

    def __init__(self, epochs: int, *, disable: bool, console: Console | None = None) -> None:
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("{task.fields[label]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console or err_console,
            refresh_per_second=1,
            disable=disable,
        )
        self.tasks: dict[tuple[str | None, int | None], TaskID] = {}

    def __enter__(self) -> "EpochProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(
        self, fold: int | None, epoch: int, metrics: dict[str, float], *, label: str | None = None, epochs: int = 0
    ) -> None:
        """Move the bar of ``fold`` of the training that ``label`` names (a sweep's trial; none for
        the one training), whose epochs are ``epochs`` (0: the bars' default)."""
        key = (label, fold)
        if key not in self.tasks:
            name = " ".join(part for part in (label, f"fold {fold}" if fold is not None else None) if part)
            total = epochs or self.epochs
            self.tasks[key] = self.progress.add_task("", total=total, label=name or "training")
        shown = " ".join(f"{name} {metrics[name]:.4f}" for name in SHOWN if name in metrics)
        self.progress.update(self.tasks[key], completed=epoch, description=shown)


def _progress_callback(progress: EpochProgress) -> Any:
    """The engine callback that moves ``progress`` at each epoch's end."""
    from core.engine.events import Callback

    class ProgressBar(Callback):
        def on_epoch_end(self, state: "State") -> None:
            progress.update(state.fold, state.epoch, state.epoch_metrics)

    return ProgressBar()


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _summary_table(summary: dict[str, Any], where: str) -> Table:
    """A run's summary as a table; a k-fold run's as one row per fold and the mean ± std."""
    if "folds" not in summary:
        table = Table(title=f"run {summary['status']} → {where}", show_header=False)
        for key, value in summary.items():
            if value is not None:
                table.add_row(key, _cell(value))
        return table
    folds, mean, std = summary["folds"], summary["mean"], summary["std"]
    columns = [name for name in FOLD_METRICS if name in mean]
    table = Table(title=f"{len(folds)}-fold cross-validation {summary['status']} → {where}")
    for column in ("fold", "status", "epochs", *columns):
        table.add_column(column, justify="left" if column == "status" else "right")
    for fold in folds:
        values = [_cell(fold[c]) if isinstance(fold.get(c), float) else "-" for c in columns]
        table.add_row(str(fold["fold"]), fold["status"], str(fold["epochs"]), *values)
    table.add_row("mean ± std", "", "", *(f"{mean[c]:.4f} ± {std[c]:.4f}" for c in columns))
    if summary["failure"]:
        table.caption = f"failed: {summary['failure']}"
    return table


def _folder_verdicts(spec: "ExperimentSpec", folder: Path, failure: str | None) -> list[dict[str, Any]]:
    """What a finished training's series say, read from its metrics file (a resumed run's too)."""
    from core import run_folder
    from core.insight.series import from_points
    from core.insight.verdicts import assess

    lines = (folder / run_folder.METRICS).read_text().splitlines()
    points = [(p["step"], p["epoch"], p["name"], p["value"]) for p in map(json.loads, lines)]
    return [verdict.as_dict() for verdict in assess(spec, from_points(points), failure=failure, final=True)]


SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def _change(op: dict[str, Any]) -> str:
    """A JSON Patch op as a person reads it: ``/optimizer/lr → 0.2``."""
    value = json.dumps(op.get("value")) if "value" in op else ""
    return f"{op['path']} → {value}" if op.get("op") in ("replace", "add") else f"{op.get('op')} {op.get('path')}"


def _print_verdicts(verdicts: list[dict[str, Any]] | None) -> None:
    """The verdicts under a summary: severity, code, what the series show, the change to try."""
    if not verdicts:
        return
    table = Table(title="verdicts")
    for column in ("severity", "code", "what the curves say", "try"):
        table.add_column(column)
    for verdict in verdicts:
        style = SEVERITY_STYLE.get(verdict["severity"], "")
        table.add_row(
            f"[{style}]{verdict['severity']}[/{style}]" if style else verdict["severity"],
            verdict["code"],
            verdict["message"],
            "\n".join(_change(op) for op in verdict.get("suggestion") or []),
        )
    out_console.print(table)


def _checkpoint_policy() -> Any:
    """Checkpoints as the service's workers take them (TRAINYARD_CHECKPOINT_* settings)."""
    from core.engine.checkpoint import CheckpointPolicy
    from core.settings import Settings

    settings = Settings()
    return CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_min_interval_s)


def _param_names(keys: list[str]) -> dict[str, str]:
    """A sweep parameter's name for labels and columns: the last part of its path (``lr`` for
    ``optimizer.lr``), or the whole key where two parameters end alike."""
    from core.spec.trials import key_path

    last = {key: key_path(key)[-1] for key in keys}
    return {key: name if list(last.values()).count(name) == 1 else key for key, name in last.items()}


def _param_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def _trial_label(trial: int, params: dict[str, Any]) -> str:
    """``trial 3 lr=0.1``: a trial's progress label."""
    names = _param_names(list(params))
    return " ".join([f"trial {trial}", *(f"{names[key]}={_param_value(value)}" for key, value in params.items())])


def _sweep_table(sweep: "SweepSpec", trials: "list[TrialOutcome]", summary: dict[str, Any], where: str) -> Table:
    """A sweep's trials best first, one row each with its parameters and metric; the best one marked."""
    from core.sweep.outcome import ranked

    names = _param_names(list(sweep.parameters))
    best = summary["best"]
    table = Table(title=f"{sweep.method} sweep {summary['status']} → {where}")
    for column in ("trial", "status", "epochs", *names.values(), sweep.metric):
        left, kept = column in ("trial", "status"), column in ("trial", sweep.metric)
        table.add_column(column, justify="left" if left else "right", no_wrap=kept)
    for trial in ranked(sweep, trials):
        marked = best is not None and trial.trial == best["trial"]
        table.add_row(
            f"{trial.trial} ★ best" if marked else str(trial.trial),
            trial.status,
            str(trial.epochs),
            *(_param_value(trial.params[key]) for key in names),
            "-" if trial.value is None else f"{trial.value:.4f}",
            style="bold" if marked else None,
        )
    ended = ", ".join(f"{count} {status}" for status, count in summary["outcomes"].items())
    table.caption = f"{summary['trials']} trials ({ended}), {summary['epochs']} epochs in all"
    if best is not None:
        table.caption += f"; best: trial {best['trial']} ({best['run']}), {sweep.metric} {best[sweep.metric]:.4f}"
    return table


def _train_sweep(
    spec: "ExperimentSpec",
    document: dict[str, Any],
    folder: Path,
    *,
    jobs: int,
    device: str | None,
    as_json: bool,
    local_base: Path,
) -> None:
    """Run a sweep's trials locally (``jobs`` at once), a progress bar per trial, then its table."""
    from core.sweep.local import TrialEpoch, run_sweep

    with EpochProgress(spec.epochs, disable=as_json) as progress:

        def on_epoch(report: TrialEpoch) -> None:
            label = _trial_label(report.trial, report.params)
            progress.update(report.fold, report.epoch, report.metrics, label=label, epochs=report.epochs)

        result = run_sweep(
            spec,
            document,
            folder,
            jobs=jobs,
            device=device,
            local_base=local_base,
            checkpoints=_checkpoint_policy(),
            on_epoch=on_epoch,
        )
    summary = {**result.summary, "out": str(folder)}
    if as_json:
        print(json.dumps(summary))
    else:
        out_console.print(_sweep_table(result.sweep, result.trials, summary, str(folder)))
    raise typer.Exit(0 if summary["status"] == "succeeded" else 1)


@app.command()
def train(
    spec_path: Annotated[Path, typer.Argument(help="the experiment spec (JSON)")],
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/NAME-TIME)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoint in --out (a stopped run)")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="a sweep's trials trained at once, each in its own process")] = 1,
) -> None:
    """Train a spec locally, no server: progress bar, summary, weights and metrics in the run folder.
    A spec with a sweep trains its trials, each in a folder of its own, and prints them ranked."""
    from core.data.files import data_access
    from core.engine import distributed
    from core.engine.checkpoint import remove_checkpoint
    from core.engine.plan import plan_experiment
    from core.engine.precision import check_precision
    from core.engine.run import RunResult, pick_device, train_run
    from core.run_folder import checkpoint_folder
    from core.spec.schema import parse_spec

    document = _read_json(spec_path)
    try:
        spec = parse_spec(document)
        with data_access(local_base=spec_path.parent):  # file sources: relative to the spec file
            plan = plan_experiment(spec)
        check_precision(plan.spec.precision, pick_device(device))
    except SpecInvalid as exc:
        if as_json:
            out_console.print_json(json.dumps({"status": "invalid", "errors": [e.as_dict() for e in exc.errors]}))
        else:
            _print_errors(exc.errors)
        raise typer.Exit(INVALID) from None
    folder = out or Path("runs") / f"{plan.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    ranks = distributed.from_env()  # started by torchrun as one rank of several (README: several machines)
    if spec.sweep is not None:
        if resume or ranks is not None:
            why = "--resume continues one stopped run" if resume else "torchrun's ranks train one run together"
            err_console.print(f"[red]{why}; a sweep's trials are runs of their own[/red]")
            raise typer.Exit(INVALID)
        _train_sweep(spec, document, folder, jobs=jobs, device=device, as_json=as_json, local_base=spec_path.parent)
    follower = ranks is not None and not ranks.writer
    with EpochProgress(plan.spec.epochs, disable=as_json or follower) as progress:
        try:
            result = train_run(
                plan,
                folder=folder,
                callbacks=[_progress_callback(progress)],
                device=device,
                resume=resume,
                checkpoints=_checkpoint_policy(),
                ranks=ranks,
            )
        except SpecInvalid as exc:  # the spec's devices against the launcher's processes
            _print_errors(exc.errors)
            raise typer.Exit(INVALID) from None
    if follower:  # rank 0 writes the run folder and prints the summary
        raise typer.Exit(0 if result.status == "succeeded" else 1)
    result.save(folder)
    remove_checkpoint(checkpoint_folder(folder))
    summary = {**result.summary(), "out": str(folder)}
    if isinstance(result, RunResult):  # a k-fold run's folds are each a training of their own
        summary["verdicts"] = _folder_verdicts(plan.spec, folder, result.failure)
    if as_json:
        print(json.dumps(summary))
    else:
        out_console.print(_summary_table({k: v for k, v in summary.items() if k != "verdicts"}, str(folder)))
        _print_verdicts(summary.get("verdicts"))
    raise typer.Exit(0 if result.status == "succeeded" else 1)


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="a run folder, or the model archive downloaded from the service")],
    inputs_path: Annotated[Path, typer.Argument(help='JSON: {"inputs": [...]} or a list of inputs')],
) -> None:
    """Offline predictions from a run's artifacts, with the run's stored preprocessing."""
    from core.artifacts import load_trained

    document = _read_json(inputs_path)
    inputs = document["inputs"] if isinstance(document, dict) else document
    with tempfile.TemporaryDirectory() as unpacked:
        folder = run
        if zipfile.is_zipfile(run):
            with zipfile.ZipFile(run) as archive:
                archive.extractall(unpacked)
            folder = Path(unpacked)
        trained = load_trained(folder)
        try:
            result = trained.predict(trained.inputs_tensor(inputs))
        except SpecInvalid as exc:
            _print_errors(exc.errors)
            raise typer.Exit(INVALID) from None
    print(json.dumps(result))


def _worker_argv(queues: list[str]) -> list[str]:
    # solo pool: one task at a time in the worker's own process (CUDA-safe; one worker per GPU)
    solo = ["-P", "solo", "-c", "1"]
    return ["worker", *solo, "-Q", ",".join(queues), "--without-gossip", "--without-mingle", "-l", "INFO"]


@app.command()
def worker() -> None:
    """Start a worker alone (production: against TRAINYARD_DATABASE_URL and TRAINYARD_BROKER_URL). It consumes
    the queues of runs asking for 1 to TRAINYARD_DEVICES devices (default: the CUDA devices it sees, on the CPU 1)."""
    from worker.celery_app import worker_queues
    from worker.tasks import advert, settings
    from worker.tasks import app as celery_app

    celery_app.worker_main(_worker_argv(worker_queues(settings, advert.devices)))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="folder for the database, queue and artifacts")] = None,
    api_processes: Annotated[
        int, typer.Option(min=1, help="API processes on the port, each with its own model cache and batcher")
    ] = 1,
    insecure_open: Annotated[
        bool, typer.Option("--insecure-open", help="listen on a non-loopback address with TRAINYARD_AUTH=off")
    ] = False,
) -> None:
    """API + one worker on the embedded default: SQLite, a filesystem queue and local artifacts, all in one folder.
    The worker is supervised: one that dies is started again (with backoff) and why it died is logged.
    With auth off it listens on loopback only, unless --insecure-open."""
    import uvicorn

    from cli.supervise import Supervisor, log_to_stderr
    from core.settings import Settings

    if data_dir is not None:
        os.environ["TRAINYARD_DATA_DIR"] = str(data_dir.resolve())
    settings = Settings()
    if settings.auth == "off" and not _loopback(host) and not insecure_open:
        err_console.print(
            f"[red]refusing to listen on {host} with auth off: anyone who reaches it acts as the local user. "
            "Set TRAINYARD_AUTH=api_key (and create a key: trainyard keys create --tenant NAME), "
            "listen on 127.0.0.1, or pass --insecure-open.[/red]"
        )
        raise typer.Exit(INVALID)
    from core.store.db import migrate

    migrate(settings.resolved_database_url)
    log_to_stderr()
    supervisor = Supervisor([sys.executable, "-m", "cli.main", "worker"], env=os.environ.copy())
    supervisor.start()
    # uvicorn re-raises the SIGTERM it caught once it has shut down: exit through `finally` then
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "api.main:create_app",  # each process builds its app from the same TRAINYARD_* environment
            factory=True,
            host=host,
            port=port,
            workers=api_processes,
            access_log=settings.access_log,
        )
    finally:
        supervisor.stop()


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` included); a name or wildcard is not."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _events(client: Any, url: str, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The run's Server-Sent Events as (event, data) until the run and its children have finished:
    a stream the server ends early (after ``TRAINYARD_MAX_STREAM_S``) is reopened from the last
    event id it sent, so no point is seen twice or lost."""
    last_id: str | None = None
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        finished = False
        with client.stream("GET", f"{url}/v1/runs/{run_id}/events", headers=headers, timeout=None) as stream:
            if stream.status_code >= 400:
                err_console.print(f"[red]cannot follow {run_id}: {stream.read().decode()}[/red]")
                return
            event = ""
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    last_id = line.removeprefix("id: ")
                elif line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    if event == "status" and data.get("run_id", run_id) == run_id:
                        finished = data["status"] not in ("queued", "running")
                    yield event, data
        if finished:
            return


def _children(client: Any, url: str, run_id: str) -> list[dict[str, Any]]:
    """Every child of a parent run (all pages)."""
    items: list[dict[str, Any]] = []
    params = {"limit": 200}
    while True:
        page = client.get(f"{url}/v1/runs/{run_id}/children", params=params).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


class _Bars:
    """Which progress bar a run's events move: the run's own, or, on a parent, each child's (a
    sweep's trial labelled with its parameters, a k-fold run's fold)."""

    def __init__(self, client: Any, url: str, run: dict[str, Any]) -> None:
        self.client, self.url, self.run = client, url, run
        self.bars: dict[str, tuple[str | None, int | None, int]] = {run["id"]: (None, None, run["spec"]["epochs"])}

    def of(self, run_id: str) -> tuple[str | None, int | None, int] | None:
        if run_id not in self.bars:  # a child we have not seen yet: read the parent's children again
            for child in _children(self.client, self.url, self.run["id"]):
                epochs = child["spec"].get("epochs", self.run["spec"]["epochs"])
                if self.run["kind"] == "kfold":
                    self.bars[child["id"]] = (None, child["trial"], epochs)
                else:
                    self.bars[child["id"]] = (_trial_label(child["trial"], child["params"] or {}), None, epochs)
        return self.bars.get(run_id)


def _follow(client: Any, url: str, run: dict[str, Any], *, disable: bool) -> str:
    """Show a submitted run's progress as `train` shows it (a parent's: a bar per child); returns
    its final status."""
    status = run["status"]
    bars = _Bars(client, url, run)
    per_epoch: dict[tuple[str, int], dict[str, float]] = {}
    with EpochProgress(run["spec"]["epochs"], disable=disable) as progress:
        for event, data in _events(client, url, run["id"]):
            run_id = data.get("run_id", run["id"])
            if event == "status":
                if run_id == run["id"]:
                    status = data["status"]
                if data.get("failure") and not disable:
                    which = "" if run_id == run["id"] else f"{run_id} "
                    err_console.print(f"[red]{which}{data['status']}: {data['failure']}[/red]")
                continue
            if event != "metric":  # verdicts: shown with the summary once the run has finished
                continue
            if data["name"] not in (*SHOWN, "lr") or data["value"] is None or (bar := bars.of(run_id)) is None:
                continue
            label, fold, epochs = bar
            metrics = per_epoch.setdefault((run_id, data["epoch"]), {})
            metrics[data["name"]] = data["value"]
            progress.update(fold, data["epoch"], metrics, label=label, epochs=epochs)
    return status


def _remote_sweep_table(client: Any, url: str, finished: dict[str, Any]) -> Table:
    """A finished sweep parent's table, from its children, as `train` prints a local sweep's."""
    from core.spec.sweep import SweepSpec
    from core.status import RunStatus
    from core.sweep.outcome import TrialOutcome

    trials = [
        TrialOutcome(
            child["trial"],
            child["id"],
            child["params"] or {},
            RunStatus(child["status"]),
            child["epoch"],
            child["metric"],
        )
        for child in _children(client, url, finished["id"])
    ]
    sweep = SweepSpec.model_validate(finished["spec"]["sweep"])
    summary = finished["summary"] or {"status": finished["status"], "best": None, "outcomes": {}, "trials": 0}
    summary.setdefault("epochs", sum(trial.epochs for trial in trials))
    return _sweep_table(sweep, trials, summary, f"{url}/v1/runs/{finished['id']}")


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Argument(help="the experiment spec (JSON)")],
    url: Annotated[str, typer.Option(help="the service's base URL")] = "http://127.0.0.1:8000",
    wait: Annotated[bool, typer.Option(help="follow the run's progress until it finishes")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print only the run (with --wait: its summary) as JSON")
    ] = False,
) -> None:
    """Submit a spec to a running service; with --wait, show its progress and summary as `train`
    does and exit with its outcome (0 succeeded, 1 otherwise)."""
    import httpx

    with httpx.Client(timeout=60) as client:
        try:
            response = client.post(f"{url}/v1/runs", json=_read_json(spec_path))
        except httpx.HTTPError as exc:
            err_console.print(f"[red]cannot reach {url}: {exc}[/red]")
            raise typer.Exit(1) from None
        if response.status_code >= 400:
            problem = response.json()
            err_console.print(f"[red]{problem.get('title')}: {problem.get('detail')}[/red]")
            _print_errors([SpecError(**e) for e in problem.get("errors", [])])
            raise typer.Exit(INVALID)
        run = response.json()
        if not wait:
            print(json.dumps(run)) if as_json else out_console.print(f"submitted {run['id']} ({run['status']})")
            return
        if not as_json:
            err_console.print(f"submitted {run['id']}")
        status = _follow(client, url, run, disable=as_json)
        finished = client.get(f"{url}/v1/runs/{run['id']}").json()
        summary = finished["summary"] or {"status": status, "failure": finished["failure"]}
        if as_json:
            verdicts = {"verdicts": finished["verdicts"]} if finished.get("verdicts") is not None else {}
            print(json.dumps({**summary, **verdicts}))
        elif finished["kind"] == "sweep":
            out_console.print(_remote_sweep_table(client, url, finished))
        else:
            out_console.print(_summary_table(summary, f"{url}/v1/runs/{run['id']}"))
            _print_verdicts(finished.get("verdicts"))
    raise typer.Exit(0 if status == "succeeded" else 1)


keys_app = typer.Typer(no_args_is_help=True, help="API keys for TRAINYARD_AUTH=api_key (admin, on the database).")
app.add_typer(keys_app, name="keys")


def _key_sessions():
    from core.settings import Settings
    from core.store.db import make_engine, migrate, session_factory

    url = Settings().resolved_database_url
    migrate(url)
    return session_factory(make_engine(url))


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option(help="the tenant the key acts for")]) -> None:
    """Create a key and print it once; only its SHA-256 is stored."""
    from core.store.keys import create_key

    with _key_sessions()() as session:
        try:
            key = create_key(session=session, tenant=tenant)
        except ValueError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(INVALID) from None
    err_console.print(f"key for tenant {tenant!r} (shown once; store it now):")
    print(key)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="the key's prefix: ty_<prefix>_...")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from core.store.keys import revoke_key

    with _key_sessions()() as session:
        if not revoke_key(session=session, prefix=prefix):
            err_console.print(f"[red]no active key with prefix {prefix!r}[/red]")
            raise typer.Exit(1)
    err_console.print(f"revoked {prefix}")


@keys_app.command("list")
def keys_list() -> None:
    """Tenants, key prefixes and whether they are revoked (never the keys themselves)."""
    from core.store.keys import list_keys

    table = Table("tenant", "prefix", "created", "revoked")
    with _key_sessions()() as session:
        for key in list_keys(session=session):
            table.add_row(key.tenant, key.prefix, str(key.created_at), str(key.revoked_at or ""))
    out_console.print(table)


tenants_app = typer.Typer(no_args_is_help=True, help="Per-tenant quotas (admin, on the database).")
app.add_typer(tenants_app, name="tenants")


@tenants_app.command("set-quota")
def tenants_set_quota(
    tenant: Annotated[str, typer.Argument(help="the tenant")],
    running: Annotated[int | None, typer.Option(min=0, help="runs it may have training at once")] = None,
    queued: Annotated[int | None, typer.Option(min=0, help="runs it may have waiting")] = None,
) -> None:
    """Set a tenant's quotas; one not given goes back to the service's (TRAINYARD_QUOTA_*)."""
    from core.store.tenants import set_quota

    with _key_sessions()() as session:
        try:
            set_quota(session=session, tenant=tenant, running=running, queued=queued)
        except ValueError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(INVALID) from None
    shown = {name: "default" if value is None else value for name, value in (("running", running), ("queued", queued))}
    err_console.print(f"quotas of {tenant!r}: running {shown['running']}, queued {shown['queued']}")


@tenants_app.command("list")
def tenants_list() -> None:
    """Tenants with quotas of their own (the others have the service's)."""
    from core.settings import Settings
    from core.store.tenants import list_quotas

    settings = Settings()
    table = Table("tenant", "running", "queued", "updated")
    with _key_sessions()() as session:
        for row in list_quotas(session=session):
            table.add_row(
                row.tenant,
                str(row.running if row.running is not None else f"{settings.quota_running} (default)"),
                str(row.queued if row.queued is not None else f"{settings.quota_queued} (default)"),
                str(row.updated_at),
            )
    out_console.print(table)


if __name__ == "__main__":
    app()
