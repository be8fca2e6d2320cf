"""Authentication ahead of everything else: a ``/v1`` request's key is checked before its body is read."""

from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import tenant_for
from api.predict import route_path
from api.problems import Problem, problem_response

PREFIX = "/v1"


class Authenticate:
    """ASGI middleware: finds the tenant of every ``/v1`` request from its ``Authorization`` header
    (the key looked up off the event loop; the local user when auth is off) and passes it on as
    ``scope["state"]["tenant"]``; a request without a valid key is a 401 whose body is never read.
    Other paths (``/healthz``, ``/metrics``, ``/docs``, ``/openapi.json``, ``/ui``) pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(route_path(scope), PREFIX):
            await self.app(scope, receive, send)
            return
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            tenant = await tenant_for(scope["app"].state.service, authorization)
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(f"{prefix}/")
