"""The dashboard at /ui: static pages whose scripts call the /v1 API from the browser (with the
tab's key), so a page holds no run data and needs no auth of its own."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.problems import Problem

UI = Path(__file__).resolve().parents[1] / "ui"
router = APIRouter(prefix="/ui", include_in_schema=False)
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidated on every load: an upgrade shows at once


def _page(name: str) -> FileResponse:
    return FileResponse(UI / name, headers=NO_CACHE)


@router.get("")
def runs_page() -> FileResponse:
    """The runs list."""
    return _page("runs.html")


@router.get("/runs/{run_id}")
def run_page(run_id: str) -> FileResponse:
    """A run's page (a sweep or k-fold parent gets the parent view); the script reads the id from the URL."""
    return _page("run.html")


@router.get("/compare")
def compare_page() -> FileResponse:
    """The runs named by ``ids=a,b,c`` overlaid."""
    return _page("compare.html")


@router.get("/static/{name:path}")
def asset(name: str) -> FileResponse:
    """A script, stylesheet or vendored file under api/ui."""
    path = (UI / name).resolve()
    if not path.is_relative_to(UI) or not path.is_file() or path.suffix not in {".js", ".css"}:
        raise Problem(404, "Not found", f"no asset {name!r}")
    return FileResponse(path, headers=NO_CACHE)
