"""docker-compose.yml run as local processes, since no Docker engine runs here: each service's
``command`` with its ``environment``, the hosts ``postgres`` and ``redis`` mapped to the machine's
PostgreSQL and Redis, every container path to a folder (one per named volume, shared by the
services that mount it; one per service for a path it does not mount). Where mount namespaces
are available (``unshare``), each service sees its folders at the same path, as containers do,
so an upload on a path the worker does not share is invisible to the worker. Then, over real HTTP:
a key, an upload, a run trained on it by the worker, and a prediction.

``TRAINYARD_TEST_COMPOSE`` names another compose file to run instead of the repository's."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from cli.main import _loopback
from tests.service.conftest import ROOT, TERMINAL, _redis_reachable, free_port, postgres_database, wait_for
from tests.service.test_datasets import seed_csv

COMPOSE = Path(os.environ.get("TRAINYARD_TEST_COMPOSE", ROOT / "docker-compose.yml"))
REDIS_DB = 13  # the other service tests use 0
SERVICES = ("migrate", "api", "worker")
FOLDER_SETTINGS = ("TRAINYARD_DATA_DIR", "TRAINYARD_ARTIFACTS")
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]  # a mount namespace, root or not


def compose_services() -> dict[str, dict[str, Any]]:
    """The compose file's services; YAML resolves the ``x-trainyard-env`` anchor."""
    return yaml.safe_load(COMPOSE.read_text())["services"]


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """container path → named volume the service mounts there."""
    mounts = {}
    for volume in service.get("volumes", []):
        name, target = volume.split(":")[:2]
        if not name.startswith(("/", ".")):
            mounts[target] = name
    return mounts


def container_paths(service: dict[str, Any]) -> set[str]:
    """Absolute paths the service's environment names, and the targets of its named volumes."""
    named = {value for value in service.get("environment", {}).values() if str(value).startswith("/")}
    return named | set(named_volumes(service))


def _namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*UNSHARE, "true"], capture_output=True).returncode == 0


@dataclass
class Machine:
    """Where the compose file's hosts and volumes are on this machine."""

    tmp: Path
    database_url: str
    broker_url: str
    queue: str
    isolated: bool

    def backing(self, service_name: str, service: dict[str, Any], path: str) -> Path:
        """The folder behind a container path: its volume's (shared), else the service's own."""
        volume = named_volumes(service).get(path)
        where = self.tmp / "volumes" / volume if volume else self.tmp / "containers" / service_name / path.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        return where

    def seen_at(self, path: str) -> Path:
        """Where a service sees a container path: one place for all (mounted per service) when isolated."""
        where = self.tmp / "root" / path.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        return where

    def host(self, url: str) -> str:
        """A URL with a compose host replaced by the machine's service."""
        host = urlsplit(url).hostname
        if host == "postgres":
            return self.database_url  # a fresh database; the machine's user (trust auth) replaces the compose one
        if host == "redis":
            return self.broker_url
        raise AssertionError(f"{url}: no mapping for host {host!r}")

    def environment(self, service_name: str, service: dict[str, Any]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINYARD_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # .venv's commands first
        env["TRAINYARD_QUEUE"] = self.queue  # never another test's messages
        for key, value in service.get("environment", {}).items():
            value = str(value)
            if "://" in value:
                value = self.host(value)
            elif value in container_paths(service):
                value = str(self.seen_at(value) if self.isolated else self.backing(service_name, service, value))
            env[key] = value
        return env

    def wrap(self, service_name: str, service: dict[str, Any], argv: list[str]) -> list[str]:
        """``argv`` in the service's own mount namespace, its folders bound where it sees them."""
        if not self.isolated:
            return argv
        binds = []
        for path in sorted(container_paths(service)):
            binds += [str(self.backing(service_name, service, path)), str(self.seen_at(path))]
        script = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@"'
        return [*UNSHARE, "sh", "-c", script, "sh", *binds, "--", *argv]


def api_command(service: dict[str, Any], port: int) -> list[str]:
    """The api's command listening on loopback, its published container port replaced by ``port``."""
    published = {str(mapping).split(":")[-1] for mapping in service.get("ports", [])}
    argv = [str(arg) for arg in service["command"]]
    for i in range(1, len(argv)):
        if argv[i - 1] == "--host":
            argv[i] = "127.0.0.1"
        elif argv[i - 1] == "--port":
            assert argv[i] in published, f"the api listens on {argv[i]}, not a published port {published}"
            argv[i] = str(port)
    return argv


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def test_api_and_worker_share_their_folders() -> None:
    """Every folder a Trainyard setting names in api or worker is the same named volume in both."""
    services = compose_services()
    for setting in FOLDER_SETTINGS:
        volumes = {}
        for name in ("api", "worker"):
            path = services[name]["environment"][setting]
            volumes[name] = named_volumes(services[name]).get(path)
        assert volumes["api"] is not None and volumes["api"] == volumes["worker"], f"{setting}: {volumes}"


def test_compose_auth_and_restarts() -> None:
    services = compose_services()
    for name in ("api", "worker", "migrate"):
        assert services[name]["environment"].get("TRAINYARD_AUTH") == "api_key", name
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name].get("restart") in {"always", "unless-stopped", "on-failure"}, name


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    _redis_reachable()
    with postgres_database("trainyard_compose") as database_url:
        yield Machine(
            tmp=tmp_path,
            database_url=database_url,
            broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
            queue=f"compose-{tmp_path.name}",
            isolated=_namespaces(),
        )


def test_compose_services_upload_train_and_predict(machine: Machine) -> None:
    services = compose_services()
    logs = machine.tmp / "logs"
    logs.mkdir()

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        log = (logs / f"{name}.log").open("ab")
        command = machine.wrap(name, services[name], argv)
        env = machine.environment(name, services[name])
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)

    def diagnosis() -> str:
        return "".join(f"\n--- {log.name}\n{tail(log)}" for log in sorted(logs.iterdir()))

    migrate = start("migrate", [str(arg) for arg in services["migrate"]["command"]])
    assert migrate.wait(timeout=120) == 0, diagnosis()

    port = free_port()
    with ExitStack() as stack:
        for name, argv in (("api", api_command(services["api"], port)), ("worker", services["worker"]["command"])):
            process = start(name, [str(arg) for arg in argv])
            stack.callback(_stop, process)
        created = subprocess.run(
            machine.wrap("api", services["api"], ["trainyard", "keys", "create", "--tenant", "compose"]),
            cwd=ROOT,
            env=machine.environment("api", services["api"]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]

        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        _wait_healthy(client, diagnosis)
        assert client.get("/v1/runs").status_code == 401  # auth is on
        client.headers["Authorization"] = f"Bearer {key}"

        upload = client.post("/v1/datasets", files={"file": ("seed.csv", seed_csv(), "text/csv")})
        assert upload.status_code == 201, upload.text
        source = {"type": "dataset", "id": upload.json()["id"], "target": "label", "bad_rows": "skip"}
        spec = {
            "name": "compose",
            "epochs": 2,
            "data": {"source": source},
            "model": {"type": "mlp", "hidden": [8]},
            "regularization": {"early_stopping": None},
        }
        submitted = client.post("/v1/runs", json=spec)
        assert submitted.status_code in (200, 201, 202), submitted.text
        run = wait_for(client, submitted.json()["id"], TERMINAL, timeout=180)  # type: ignore[arg-type]
        assert run["status"] == "succeeded", f"{run.get('stop_reason')}{diagnosis()}"

        features = [float(value) for value in seed_csv(1).decode().splitlines()[1].split(",")[:-1]]
        predicted = client.post(f"/v1/runs/{run['id']}/predict", json={"inputs": [features]})
        assert predicted.status_code == 200, predicted.text
        assert len(predicted.json()["predictions"]) == 1


def _wait_healthy(client: httpx.Client, diagnosis: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the api did not answer /healthz in {timeout}s{diagnosis()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_refuses_an_open_address_with_auth_off(tmp_path: Path) -> None:
    env = {**os.environ, "TRAINYARD_AUTH": "off", "COLUMNS": "200"}
    argv = [sys.executable, "-m", "cli.main", "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(
        [*argv, "--data-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    message = re.sub(r"\s+", " ", done.stderr)
    assert "TRAINYARD_AUTH=api_key" in message and "--insecure-open" in message
    assert not (tmp_path / "trainyard.db").exists()  # refused before anything started


def test_loopback_addresses() -> None:
    assert all(_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
