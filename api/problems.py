"""RFC 9457 problem details for every 4xx/5xx, with JSON pointers for invalid input."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from core.errors import SpecError, SpecInvalid, pointer

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("trainyard.api")


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[SpecError] | None = None,
        kind: str = "about:blank",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors, self.kind = status, title, detail, errors or [], kind
        self.headers = headers


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = [e.as_dict() for e in problem.errors]
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def _invalid(exc: SpecInvalid, title: str, what: str, kind: str) -> Problem:
    return Problem(422, title, f"{len(exc.errors)} problem(s) in the {what}", exc.errors, kind=f"/problems/{kind}")


def invalid_spec(exc: SpecInvalid) -> Problem:
    return _invalid(exc, "Invalid experiment spec", "spec", "invalid-spec")


def invalid_input(exc: SpecInvalid) -> Problem:
    """A 422 for prediction inputs the model cannot take (each error points into the request body)."""
    return _invalid(exc, "Invalid prediction input", "inputs", "invalid-input")


def invalid_upload(exc: SpecInvalid) -> Problem:
    """A 422 for an uploaded file that cannot be read as a data set (errors point at ``/file``)."""
    return _invalid(exc, "Unreadable data set", "upload", "invalid-upload")


def invalid_request(errors: Sequence[Any]) -> Problem:
    """A 422 from pydantic's errors on a request: body locations become JSON pointers into the body."""
    found = []
    for err in errors:
        where, *path = err["loc"]
        found.append(SpecError(pointer(*path) if where == "body" else pointer(where, *path), err["msg"]))
    detail = "the request does not match the API"
    return Problem(422, "Invalid request", detail, found, kind="/problems/invalid-request")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(SpecInvalid)
    async def _spec(request: Request, exc: SpecInvalid) -> JSONResponse:
        return problem_response(invalid_spec(exc))

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(invalid_request(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "Internal error", "the server failed on this request; it is logged"))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route's methods for the path
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return problem_response(Problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers))


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at the request's path, asked of the routes themselves: FastAPI
    includes a router as one route that matches for all of its own (``app.routes`` lists no paths)."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
