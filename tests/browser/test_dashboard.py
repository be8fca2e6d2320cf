"""The dashboard at /ui in headless Chromium (Debian's, driven by Playwright) against a real
`trainyard serve` with its worker: the list, a run page's curves (counted in the charts' data, not
in pixels) and verdicts, a running run's chart growing over the event stream, a sweep page with a
line per child, and, with TRAINYARD_AUTH=api_key, the key form and one tenant's runs only. Any page
error or console error fails the test. TRAINYARD_SCREENSHOTS=1 writes the README's screenshots to
docs/screenshots/."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from api.main import create_app
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import ROOT, TERMINAL, free_port, small_spec, wait_for

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
MAX_POINTS = 2000  # what the run page asks /metrics for


def example(name: str, **overrides: Any) -> dict[str, Any]:
    return {**json.loads((ROOT / "examples" / f"{name}.json").read_text()), **overrides}


@dataclass
class Tab:
    """A page and every page error and console error it reported; ``allowed`` patterns are expected."""

    page: Page
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(re.search(p, message.text) for p in self.allowed):
            self.problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def charts(self) -> dict[str, dict[str, Any]]:
        """Each chart's metric names and aligned uPlot data, as the page holds them."""
        return self.page.evaluate(
            """() => Object.fromEntries(Object.entries(window.trainyard.charts).map(
                 ([name, chart]) => [name, {metrics: chart.metrics, labels: chart.labels, data: chart.data}]))"""
        )


def points(values: list[float | None]) -> int:
    return sum(value is not None for value in values)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # in CI a missing browser is a failure, never a skip
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    tab = Tab(page)
    page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    page.on("console", tab.console)
    yield tab
    context.close()
    assert not tab.problems, tab.problems


@dataclass
class Served:
    client: httpx.Client
    runs: dict[str, str]  # what each run is for → its id

    @property
    def url(self) -> str:
        return str(self.client.base_url).rstrip("/")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`trainyard serve` (API + worker) on a free port with its own data folder, and the runs the
    pages show: deep_sigmoid (vanishing gradients) and the lr sweep, trained before the tests start."""
    data_dir = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    env = {**os.environ, "TRAINYARD_ACCESS_LOG": "false", "TRAINYARD_SSE_POLL_SECONDS": "0.1"}
    log = (data_dir / "serve.log").open("wb")
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, (data_dir / "serve.log").read_text()
            time.sleep(0.2)
        runs = {
            "deep_sigmoid": client.post("/v1/runs", json=example("deep_sigmoid")).json()["id"],
            "sweep": client.post("/v1/runs", json=example("lr_sweep")).json()["id"],
        }
        for run_id in runs.values():
            assert wait_for(client, run_id, TERMINAL, timeout=180)["status"] == "succeeded"  # type: ignore[arg-type]
        yield Served(client, runs)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api_metrics(client: httpx.Client, run_id: str, **params: Any) -> dict[str, dict[str, list]]:
    response = client.get(f"/v1/runs/{run_id}/metrics", params={**params, "max_points": MAX_POINTS})
    if response.status_code == 422:  # an API without max_points
        response = client.get(f"/v1/runs/{run_id}/metrics", params=params)
    response.raise_for_status()
    return response.json()["series"]


def screenshot(page: Page, name: str, until: str, tmp_path: Path) -> Path:
    """The page from the top to the bottom of ``until``; into docs/screenshots with TRAINYARD_SCREENSHOTS=1."""
    folder = SCREENSHOTS if os.environ.get("TRAINYARD_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(until).bounding_box()
    assert box is not None
    path = folder / f"{name}.png"
    page.screenshot(
        path=path, full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"] + 8}
    )
    assert path.stat().st_size > 10_000
    return path


def test_the_list_shows_the_runs_and_filters_them(served: Served, tab: Tab) -> None:
    page = tab.page
    listed = served.client.get("/v1/runs").json()["items"]
    page.goto(f"{served.url}/ui")
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)") == [
        run["id"] for run in listed
    ]
    sweep_row = page.locator(f'tr[data-run="{served.runs["sweep"]}"]')
    best = served.client.get(f"/v1/runs/{served.runs['sweep']}").json()["summary"]["best"]["val_loss"]
    assert f"{best:.4g}" in sweep_row.inner_text()  # the best trial's metric, not a last value

    page.fill("#name-filter", "digits-deep-sigmoid")
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 1")
    assert page.locator("#runs tbody tr").get_attribute("data-run") == served.runs["deep_sigmoid"]
    page.fill("#name-filter", "")
    page.select_option("#status-filter", "failed")
    page.wait_for_selector("#no-runs:not([hidden])")

    page.select_option("#status-filter", "")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 2")
    for run_id in served.runs.values():
        page.check(f'tr[data-run="{run_id}"] .pick-run')
    page.click("#compare")
    page.wait_for_url(re.compile(r"/ui/compare\?ids="))
    page.wait_for_function("window.trainyard.charts.val_loss && window.trainyard.charts.val_loss.data.length === 3")
    assert len(tab.charts()["val_loss"]["labels"]) == 2  # the run and the sweep's best trial, overlaid


def test_the_run_page_draws_every_point_the_api_returned_and_the_verdicts(
    served: Served, tab: Tab, tmp_path: Path
) -> None:
    page, run_id = tab.page, served.runs["deep_sigmoid"]
    page.goto(f"{served.url}/ui/runs/{run_id}")
    page.wait_for_selector("html[data-ready]")
    series = api_metrics(served.client, run_id)
    charts = tab.charts()
    for name, wanted in {"loss": 2, "accuracy": 2, "running_loss": 1, "lr": 1, "grad_norm": 11, "act_std": 10}.items():
        assert len(charts[name]["metrics"]) == wanted, (name, charts[name]["metrics"])
    for name, chart in charts.items():
        for i, metric in enumerate(chart["metrics"], start=1):
            drawn = points(chart["data"][i])
            assert drawn == points(series[metric]["value"]) > 0, (name, metric, drawn)
    assert charts["loss"]["data"][0] == series["train_loss"]["epoch"]  # per epoch on the x axis
    assert page.locator("#layers tbody tr").count() == 22  # the validation's layer table: 10 × (dense, sigmoid) + 2

    run = served.client.get(f"/v1/runs/{run_id}").json()
    codes = [verdict["code"] for verdict in run["verdicts"]]
    assert "vanishing_gradients" in codes, codes
    page.wait_for_selector("#verdicts .verdict")
    assert page.locator("#verdicts .verdict").evaluate_all("cards => cards.map(c => c.dataset.verdict)") == codes
    page.click('[data-chart="loss"] .log-toggle')  # a log scale: the same points on another scale
    assert tab.charts()["loss"]["data"] == charts["loss"]["data"]
    page.click('[data-chart="loss"] .log-toggle')
    print("run page screenshot:", screenshot(page, "run", '[data-chart="update_ratio"]', tmp_path))


def test_the_sweep_page_draws_one_line_per_child_ranked_by_the_metric(served: Served, tab: Tab, tmp_path: Path) -> None:
    page, sweep_id = tab.page, served.runs["sweep"]
    children = served.client.get(f"/v1/runs/{sweep_id}/children").json()
    page.goto(f"{served.url}/ui/runs/{sweep_id}")
    lines = len(children["items"])
    page.wait_for_function(f"window.trainyard.charts.children?.data.length === {lines + 1}")  # x, then a line each
    page.wait_for_selector("#children tbody tr")
    chart = tab.charts()["children"]
    assert chart["metrics"] == [child["id"] for child in children["items"]]
    assert chart["labels"] == [f"#{c['trial']} lr={c['params']['optimizer.lr']:g}" for c in children["items"]]
    for i, child in enumerate(children["items"], start=1):
        assert points(chart["data"][i]) == points(api_metrics(served.client, child["id"])["val_loss"]["value"]) > 0
    ranked = sorted(children["items"], key=lambda c: c["metric"])
    assert page.locator("#children tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)") == [
        c["id"] for c in ranked
    ]
    assert ranked[0]["id"] == children["best_id"]
    scatter = tab.charts()["param:optimizer.lr"]
    assert points(scatter["data"][1]) == len(children["items"])
    print("sweep page screenshot:", screenshot(page, "sweep", "#children", tmp_path))


def test_a_suggestion_applied_from_the_page_starts_the_changed_run(served: Served, tab: Tab) -> None:
    children = served.client.get(f"/v1/runs/{served.runs['sweep']}/children").json()["items"]
    high = next(child for child in children if child["params"]["optimizer.lr"] == 2.0)
    run = served.client.get(f"/v1/runs/{high['id']}").json()
    verdict = next(v for v in run["verdicts"] if v["code"] == "lr_too_high")
    page = tab.page
    page.goto(f"{served.url}/ui/runs/{high['id']}")
    page.click('#verdicts .apply[data-verdict="lr_too_high"]')
    page.wait_for_url(re.compile(r"/ui/runs/run_(?!" + high["id"].removeprefix("run_") + ")"))
    page.wait_for_selector("#run-status .status")
    retried = served.client.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert retried["retry_of"] == high["id"]
    assert retried["spec"]["optimizer"]["lr"] == verdict["suggestion"][0]["value"]
    wait_for(served.client, retried["id"], TERMINAL, timeout=120)  # the worker is free for the next test


def test_a_running_runs_chart_grows_without_a_reload(served: Served, tab: Tab) -> None:
    spec = small_spec(
        name="long",
        epochs=1000,
        data={"source": {"type": "builtin", "name": "digits"}, "batch_size": 16},
        model={"type": "mlp", "hidden": [16], "dropout": 0.0},
        diagnostics={"every_n_steps": 50},
    )
    run_id = served.client.post("/v1/runs", json=spec).json()["id"]
    page = tab.page
    try:
        wait_for(served.client, run_id, {"running", *TERMINAL})
        page.goto(f"{served.url}/ui/runs/{run_id}")
        page.wait_for_function("window.trainyard.charts.loss && window.trainyard.charts.loss.data[0].length >= 2")
        page.evaluate("window.notReloaded = true")
        count = "window.trainyard.charts.loss.data[0].length"
        first = page.evaluate(count)
        page.wait_for_function(f"{count} >= {first + 3}", timeout=60_000)
        assert page.evaluate("window.notReloaded") is True
        assert served.client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        assert page.locator("#run-status .status").inner_text() == "running"
        page.wait_for_function("window.trainyard.charts.grad_norm && window.trainyard.charts.grad_norm.data[0].length")
    finally:
        served.client.post(f"/v1/runs/{run_id}/cancel")
    page.wait_for_selector('#run-status [data-status="cancelled"]')  # the status event, over the same stream


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, list[str]]]]:
    """The API with TRAINYARD_AUTH=api_key under uvicorn in a thread (no worker: runs stay queued):
    105 runs of tenant acme (more than a page of 100) and 2 of globex."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dashboard-auth"), auth="api_key", sse_poll_seconds=0.1, sweep_interval_s=3600
    )
    migrate(settings.resolved_database_url)
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        keys = {tenant: create_key(session=session, tenant=tenant) for tenant in ("acme", "globex")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            spec = small_spec(epochs=1, data={"source": {"type": "builtin", "name": "digits", "n_samples": 200}})
            runs: dict[str, list[str]] = {"acme": [], "globex": []}
            for tenant, count in (("acme", 105), ("globex", 2)):
                headers = {"Authorization": f"Bearer {keys[tenant]}"}
                for i in range(count):
                    created = client.post("/v1/runs", json={**spec, "name": f"{tenant}-{i}"}, headers=headers)
                    assert created.status_code == 202, created.text
                    runs[tenant].append(created.json()["id"])
        yield url, keys, runs
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_with_api_keys_the_page_asks_for_a_key_and_shows_that_tenants_runs_only(
    secured: tuple[str, dict[str, str], dict[str, list[str]]], tab: Tab
) -> None:
    url, keys, runs = secured
    tab.allowed += [r"status of 401", r"status of 404", r"404: no run"]  # the key form; another tenant's run
    page = tab.page
    page.goto(f"{url}/ui")
    page.wait_for_selector("#key-form")
    assert page.locator("#runs tbody tr").count() == 0
    page.fill("#api-key", "ty_wrong_key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-form >> text=That key was not accepted")
    page.fill("#api-key", keys["acme"])
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#runs tbody tr")
    page.select_option("#limit-filter", "100")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 100")
    shown = page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    page.click("#older")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 5")
    shown += page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert shown == runs["acme"][::-1]  # every acme run, newest first, over two pages
    assert "globex" not in page.content()

    page.goto(f"{url}/ui/runs/{runs['globex'][0]}")  # the key is kept for the tab: no form this time
    page.wait_for_selector("h1 >> text=Run not found")
    assert page.locator("#key-form").count() == 0
    assert "globex" not in page.locator("main").inner_text()

    acme_run = runs["acme"][0]
    page.goto(f"{url}/ui/runs/{acme_run}")
    page.wait_for_selector('#run-status [data-status="queued"]')
    cancelled = httpx.post(f"{url}/v1/runs/{acme_run}/cancel", headers={"Authorization": f"Bearer {keys['acme']}"})
    assert cancelled.status_code == 200
    page.wait_for_selector('#run-status [data-status="cancelled"]')  # the event stream, read with the key
