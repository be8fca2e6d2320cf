"""First paint of the run page /ui/runs/{id} for a run of 100k metric points, in headless Chromium
(Debian's, driven by Playwright): ``performance.now()`` in the page (0 = navigation start) at the
first animation frame in which every chart in ``window.trainyard.charts`` holds its data and the
page has marked itself drawn (``html[data-ready]``), polled with ``page.wait_for_function``; median
and range over ``--repeats`` fresh browser contexts (empty cache). Next to it: when the metrics
request started and ended, its body's bytes, the points it carried and the points the charts hold.

The page asks ``/metrics`` for at most 2000 points a series and has no switch to ask for more, so
the full series are measured by rewriting that one request in the browser (``page.route`` drops
``max_points``; the interception costs a round trip to Playwright, about a millisecond).

The points are written into the store directly, as bench/metrics_downsample.py builds them (one
``train_loss_running`` series, or the same points over ten ``grad_norm`` series as diagnostics
record them, next to 100 epochs of the per-epoch metrics), and the run is marked succeeded with a
summary, so the page draws once and follows no event stream. The API is ``uvicorn`` in a
subprocess on a free port: the embedded SQLite database, auth off, no worker.

    python bench/dashboard_paint.py [--points 100000] [--repeats 5]
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Response, Route, sync_playwright
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.local_service import ROOT, tiny_spec
from bench.metrics_downsample import EPOCHS, PER_EPOCH, synthetic_points
from core.settings import Settings
from core.status import RunStatus
from core.store.db import make_engine, session_factory
from core.store.runs import add_points, claim_run, finish_run

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
METRICS = re.compile(r"/v1/runs/[^/]+/metrics(\?|$)")
# the first animation frame in which the page is drawn and every chart holds points: its time, else false
CHARTED = """() => {
  const charts = Object.values(window.trainyard?.charts || {});
  const held = (chart) => chart.data.slice(1).some((ys) => ys.some((v) => v !== null && v !== undefined));
  return document.documentElement.dataset.ready !== undefined && charts.length > 0 && charts.every(held)
    && performance.now();
}"""
CHART_POINTS = """() => Object.values(window.trainyard.charts).reduce((n, chart) =>
  n + chart.data.slice(1).reduce((m, ys) => m + ys.filter((v) => v !== null && v !== undefined).length, 0), 0)"""
METRICS_TIMING = """() => {
  const entry = performance.getEntriesByType("resource").find((e) => e.name.includes("/metrics"));
  return [entry.startTime, entry.responseEnd];
}"""


@dataclass
class Load:
    """One page load: ms from navigation start to the charted frame and to the metrics request's
    start and end, the metrics body's bytes and points, the points in the charts."""

    paint_ms: float
    metrics_start_ms: float
    metrics_end_ms: float
    body_bytes: int
    sent: int
    charted: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(data_dir: Path) -> Iterator[str]:
    """``uvicorn`` serving the API on a free port (it migrates the database at start); its base URL."""
    port = free_port()
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(data_dir), "TRAINYARD_AUTH": "off"}
    command = ["-m", "uvicorn", "api.main:create_app", "--factory", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([sys.executable, *command, "--no-access-log"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).json().get("database") == "ok":  # no worker here
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {process.poll()})")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def finished_run(base: str, settings: Settings, rows: list[tuple[int, int, str, float]]) -> str:
    """A succeeded run holding ``rows``, written into the store as a worker would (no worker runs)."""
    response = httpx.post(f"{base}/v1/runs", json=tiny_spec(name="bench-paint"), timeout=60)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        claim_run(session=session, run_id=run_id, worker="bench", lease_s=3600, max_running=1)
        for start in range(0, len(rows), 10_000):
            add_points(session=session, run_id=run_id, points=rows[start : start + 10_000])
        summary = {"epochs": EPOCHS, "val_loss": 1 / EPOCHS, "val_accuracy": 0.9, "seconds": 60.0}
        finish_run(
            session=session, run_id=run_id, status=RunStatus.SUCCEEDED, summary=summary, failure=None, stop_reason=None
        )
    status = httpx.get(f"{base}/v1/runs/{run_id}", timeout=60).json()["status"]
    assert status == "succeeded", status
    return run_id


def full_series(route: Route) -> None:
    route.continue_(url=re.sub(r"([?&])max_points=\d+&?", r"\1", route.request.url).rstrip("?&"))


def load(browser: Browser, url: str, *, full: bool) -> Load:
    """One load of ``url`` in a fresh context (empty cache)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        responses: list[Response] = []

        def seen(response: Response) -> None:
            if METRICS.search(response.url):
                responses.append(response)

        page.on("response", seen)
        if full:
            page.route(METRICS, full_series)
        page.goto(url, wait_until="commit")
        paint_ms = page.wait_for_function(CHARTED, polling="raf", timeout=120_000).json_value()
        assert len(responses) == 1, [r.url for r in responses]
        body = responses[0].body()
        sent = sum(len(series["step"]) for series in json.loads(body)["series"].values())
        start, end = page.evaluate(METRICS_TIMING)
        return Load(paint_ms, start, end, len(body), sent, page.evaluate(CHART_POINTS))
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="step points stored")
    parser.add_argument("--repeats", type=int, default=5, help="fresh page loads per row")
    args = parser.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="trainyard-bench-paint-")))
    table = Table(
        title=f"First paint of /ui/runs/{{id}}, {args.points:,} step points (+{EPOCHS * len(PER_EPOCH)} per epoch), "
        f"median of {args.repeats} loads (min–max); target < 1000 ms"
    )
    columns = ("step series", "metrics query", "points sent", "points charted", "body (kB)", "metrics request (ms)")
    for column in (*columns, "first paint (ms)"):
        table.add_column(column, justify="right")
    with served(settings.data_dir) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for series in (1, 10):
                url = f"{base}/ui/runs/{finished_run(base, settings, synthetic_points(args.points, series))}"
                for full in (False, True):
                    loads = [load(browser, url, full=full) for _ in range(args.repeats)]
                    paints = [one.paint_ms for one in loads]
                    start = statistics.median(one.metrics_start_ms for one in loads)
                    end = statistics.median(one.metrics_end_ms for one in loads)
                    table.add_row(
                        str(series),
                        "full" if full else "max_points=2000",
                        f"{loads[-1].sent:,}",
                        f"{loads[-1].charted:,}",
                        f"{loads[-1].body_bytes / 1000:,.0f}",
                        f"{start:.0f} → {end:.0f}",
                        f"{statistics.median(paints):.0f} ({min(paints):.0f}–{max(paints):.0f})",
                    )
        finally:
            browser.close()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
