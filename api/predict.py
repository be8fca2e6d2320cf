"""``POST /v1/runs/{id}/predict``: the serving hot path, a plain ASGI layer ahead of FastAPI's router.

Other services call it in their own request path, so it skips what a request costs inside
FastAPI's stack (matching every route, solving dependencies, building request objects): under
`wrk` on 2 cores a bare answer cost 136 µs of event-loop CPU there and 51 µs here, more than a
batched forward pass of a small model. The body is validated from bytes by pydantic, the answer
written by orjson, and errors are the app's problem+json documents. FastAPI's OpenAPI document
describes it through ``document``."""

import asyncio
import re
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import Service
from api.problems import Problem, invalid_input, invalid_request, problem_response
from api.routes.models import succeeded_run
from api.serving import ServedModel
from core.errors import SpecInvalid

PATH = "/v1/runs/{run_id}/predict"
PATH_PATTERN = re.compile(r"/v1/runs/(?P<run_id>[^/]+)/predict")


class PredictRequest(BaseModel):
    inputs: list[Any] = Field(
        min_length=1,
        max_length=10_000,
        description="samples shaped like the training inputs, or flat rows of their values in row-major order",
    )


class PredictResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]] | None = None


class PredictEndpoint:
    """ASGI middleware: answers ``POST /v1/runs/{id}/predict`` itself and passes the rest on. It sits
    inside ``api.auth.Authenticate``, which put the caller's tenant in ``scope["state"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH_PATTERN.fullmatch(route_path(scope)) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            response = problem_response(
                Problem(405, "Method not allowed", "predict takes POST", headers={"Allow": "POST"})
            )
        else:
            body = await read_body(receive)
            if body is None:  # the client went away
                return
            response = await answer(scope["app"].state.service, match["run_id"], scope["state"]["tenant"], body)
        await response(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (``--root-path`` behind a proxy), as routers see it."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(service: Service, run_id: str, tenant: str, body: bytes) -> Response:
    """Predictions for new inputs with the run's stored preprocessing; concurrent requests are
    batched into one forward pass. Class labels and probabilities for classifiers. Each input is
    a sample shaped like the training samples, or a flat row of its values in row-major order
    (64 numbers for an 8×8 image)."""
    try:
        try:
            request = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise invalid_request([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
        served = await served_model(service, run_id, tenant)
        try:
            inputs = served.trained.inputs_tensor(request.inputs)
        except SpecInvalid as exc:
            raise invalid_input(exc) from None
        result = await served.batcher.predict(inputs)
    except Problem as problem:
        return problem_response(problem)
    return Response(orjson.dumps(result), media_type="application/json")


async def served_model(service: Service, run_id: str, tenant: str) -> ServedModel:
    served = service.models.cached(run_id)  # a cached model's run already succeeded: no query
    if served is None or served.tenant != tenant:
        await asyncio.to_thread(succeeded_run, service, run_id, tenant)
        served = await service.models.get(run_id, service.settings.artifact_dir / run_id, tenant)
    return served


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the predict endpoint, which FastAPI's router does not hold, to an OpenAPI document."""
    ref = "#/components/schemas/{model}"
    schema["paths"][PATH] = {
        "post": {
            "tags": ["models"],
            "summary": "Predict",
            "description": answer.__doc__,
            "operationId": "predict",
            "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": ref.format(model="PredictRequest")}}},
            },
            "responses": {
                "200": {
                    "description": "labels or values, and class probabilities for classifiers",
                    "content": {"application/json": {"schema": {"$ref": ref.format(model="PredictResponse")}}},
                },
                "401": {"description": "no valid API key (auth on)"},
                "404": {"description": "no such run for this tenant"},
                "409": {"description": "the run has no model: not succeeded, or k-fold"},
                "422": {
                    "description": "inputs of the wrong shape or type (problem type /problems/invalid-input), "
                    "each error with its JSON pointer"
                },
            },
        }
    }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (PredictRequest, PredictResponse):
        components[model.__name__] = model.model_json_schema(ref_template=ref)
    return schema
