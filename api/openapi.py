"""The OpenAPI document as the server behaves: every error an operation can answer is listed, with
an RFC 9457 ``application/problem+json`` body. Routes name the errors of their own logic with
``errors(...)``; the ones the middleware and request parsing add (401 on ``/v1``, 400 and 413 for
a body, 422) are added here to every operation they apply to, with the API key every ``/v1``
operation needs and links from what submit and upload create to the operations that take it."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.problems import PROBLEM_JSON
from core.spec.schema import ExperimentSpec

STANDARD = {
    400: "the body is not valid JSON, or not a valid form",
    401: "no valid API key (with TRAINYARD_AUTH=api_key)",
    404: "no such run for this tenant",
    409: "the run is not in a state that allows this",
    413: "the body is over the request or upload limit",
    422: "invalid input: each error names its JSON pointer",
    429: "over one of the tenant's quotas",
    500: "the server failed on this request (it is logged)",
    503: "a dependency is unavailable",
}
REF = "#/components/schemas/{model}"
# the body of submit and validate: any JSON object is read, and checked against the spec's schema by
# the route, so that its errors are problem+json with pointers; the document says which it must be
SPEC_BODY = {"requestBody": {"content": {"application/json": {"schema": {"$ref": REF.format(model="ExperimentSpec")}}}}}


class ErrorItem(BaseModel):
    pointer: str = Field(description="JSON pointer into the request (a spec field, /query/<name>, /file)")
    message: str
    hint: str | None = None


class ProblemDetails(BaseModel):
    """An RFC 9457 problem; a health check's also carries each check's state."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a problem type such as /problems/invalid-spec, or about:blank")
    title: str
    status: int
    detail: str
    errors: list[ErrorItem] | None = Field(None, description="for 422s: every problem found, with its pointer")


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: ``errors(404, 409, e429="why")``, each with its description (the
    standard one unless given as ``e<status>=``); the problem+json body is added by ``document``."""
    found: dict[int | str, dict[str, Any]] = {code: {"description": STANDARD[code]} for code in statuses}
    for key, text in described.items():
        found[int(key.removeprefix("e"))] = {"description": text}
    return found


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add to an OpenAPI document the spec's schema, the API key, every error (as problem+json) and links."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorItem, ProblemDetails, ExperimentSpec):
        found = model.model_json_schema(ref_template=REF)
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    schema["components"]["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key (trainyard keys create --tenant NAME); ignored with TRAINYARD_AUTH=off",
        }
    }
    body = {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="ProblemDetails")}}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            added = []
            if path.startswith("/v1"):
                operation["security"] = [{"apiKey": []}]
                added.append(401)
            if "requestBody" in operation:
                added += [400, 413, 422]
            for code in added:
                responses.setdefault(str(code), {"description": STANDARD[code]})
            for code, response in responses.items():
                if int(code) >= 400:
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = STANDARD[int(code)]
                    response["content"] = body
    link(schema, "/v1/runs", "post", "202", "run_id")
    link(schema, "/v1/datasets", "post", "201", "dataset_id")
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def link(schema: dict[str, Any], path: str, method: str, status: str, parameter: str) -> None:
    """OpenAPI links from what ``method path`` creates (its ``id``) to every operation that takes it
    as ``parameter``, so a client or a test can follow a created resource."""
    links = {}
    for other, operations in schema["paths"].items():
        if "{" + parameter + "}" in other:
            for operation in operations.values():
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {parameter: "$response.body#/id"},
                }
    schema["paths"][path][method]["responses"][status]["links"] = links
