"""The `trainyard` command line: validate and train specs locally, submit them to a service, predict
from a run folder. Commands import the engine (torch) when they run, so `--help` and `keys` start fast."""

import json
import os
import signal
import subprocess
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


@app.command()
def validate(
    spec_path: Annotated[Path, typer.Argument(help="the experiment spec (JSON)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Validate a spec: errors with JSON pointers, or the resolved spec and its layer table."""
    from core.data.files import data_access
    from core.engine.plan import validate_document

    with data_access(local_base=spec_path.parent):  # file sources: relative to the spec file
        report = validate_document(_read_json(spec_path))
    if as_json:
        out_console.print_json(json.dumps(report))
    elif report["valid"]:
        out_console.print(_layer_table(report))
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
        self.tasks: dict[int | None, TaskID] = {}

    def __enter__(self) -> "EpochProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, fold: int | None, epoch: int, metrics: dict[str, float]) -> None:
        if fold not in self.tasks:
            label = f"fold {fold}" if fold is not None else "training"
            self.tasks[fold] = self.progress.add_task("", total=self.epochs, label=label)
        shown = " ".join(f"{name} {metrics[name]:.4f}" for name in SHOWN if name in metrics)
        self.progress.update(self.tasks[fold], completed=epoch, description=shown)


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


def _checkpoint_policy() -> Any:
    """Checkpoints as the service's workers take them (TRAINYARD_CHECKPOINT_* settings)."""
    from core.engine.checkpoint import CheckpointPolicy
    from core.settings import Settings

    settings = Settings()
    return CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_min_interval_s)


@app.command()
def train(
    spec_path: Annotated[Path, typer.Argument(help="the experiment spec (JSON)")],
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/NAME-TIME)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if present)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoint in --out (a stopped run)")] = False,
) -> None:
    """Train a spec locally, no server: progress bar, summary, weights and metrics in the run folder."""
    from core.data.files import data_access
    from core.engine.checkpoint import remove_checkpoint
    from core.engine.plan import plan_experiment
    from core.engine.run import train_run
    from core.run_folder import checkpoint_folder
    from core.spec.schema import parse_spec

    try:
        spec = parse_spec(_read_json(spec_path))
        with data_access(local_base=spec_path.parent):  # file sources: relative to the spec file
            plan = plan_experiment(spec)
    except SpecInvalid as exc:
        if as_json:
            out_console.print_json(json.dumps({"status": "invalid", "errors": [e.as_dict() for e in exc.errors]}))
        else:
            _print_errors(exc.errors)
        raise typer.Exit(INVALID) from None
    folder = out or Path("runs") / f"{plan.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with EpochProgress(plan.spec.epochs, disable=as_json) as progress:
        result = train_run(
            plan,
            folder=folder,
            callbacks=[_progress_callback(progress)],
            device=device,
            resume=resume,
            checkpoints=_checkpoint_policy(),
        )
    result.save(folder)
    remove_checkpoint(checkpoint_folder(folder))
    summary = {**result.summary(), "out": str(folder)}
    if as_json:
        print(json.dumps(summary))
    else:
        out_console.print(_summary_table(summary, str(folder)))
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


def _worker_argv(queue: str) -> list[str]:
    # solo pool: one task at a time in the worker's own process (CUDA-safe; one worker per GPU)
    return ["worker", "-P", "solo", "-c", "1", "-Q", queue, "--without-gossip", "--without-mingle", "-l", "INFO"]


@app.command()
def worker() -> None:
    """Start a worker alone (production: against TRAINYARD_DATABASE_URL and TRAINYARD_BROKER_URL)."""
    from worker.tasks import app as celery_app
    from worker.tasks import settings

    celery_app.worker_main(_worker_argv(settings.queue))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="folder for the database, queue and artifacts")] = None,
    api_processes: Annotated[
        int, typer.Option(min=1, help="API processes on the port, each with its own model cache and batcher")
    ] = 1,
) -> None:
    """API + one worker on the embedded default: SQLite, a filesystem queue and local artifacts, all in one folder."""
    import uvicorn

    from core.settings import Settings

    if data_dir is not None:
        os.environ["TRAINYARD_DATA_DIR"] = str(data_dir.resolve())
    settings = Settings()
    from core.store.db import migrate

    migrate(settings.resolved_database_url)
    worker_process = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=os.environ.copy())
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
        worker_process.terminate()
        worker_process.wait(timeout=30)


def _events(client: Any, url: str, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The run's Server-Sent Events as (event, data) until the stream ends."""
    with client.stream("GET", f"{url}/v1/runs/{run_id}/events", timeout=None) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield event, json.loads(line.removeprefix("data: "))


def _follow(client: Any, url: str, run: dict[str, Any], *, disable: bool) -> str:
    """Show a submitted run's progress as `train` shows it; returns its final status."""
    status, epochs = run["status"], run["spec"]["epochs"]
    per_epoch: dict[tuple[int | None, int], dict[str, float]] = {}
    with EpochProgress(epochs, disable=disable) as progress:
        for event, data in _events(client, url, run["id"]):
            if event == "status":
                status = data["status"]
                if data.get("failure") and not disable:
                    err_console.print(f"[red]{status}: {data['failure']}[/red]")
                continue
            fold_name, _, name = data["name"].rpartition("/")  # "fold2/val_loss" in a k-fold run
            if name not in (*SHOWN, "lr") or data["value"] is None:
                continue
            fold = int(fold_name.removeprefix("fold")) if fold_name.startswith("fold") else None
            metrics = per_epoch.setdefault((fold, data["epoch"]), {})
            metrics[name] = data["value"]
            progress.update(fold, data["epoch"], metrics)
    return status


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
        print(json.dumps(summary))
    else:
        out_console.print(_summary_table(summary, f"{url}/v1/runs/{run['id']}"))
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
        key = create_key(session=session, tenant=tenant)
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


if __name__ == "__main__":
    app()
