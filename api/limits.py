"""Request body size limits, enforced while the body streams in (before any route reads it)."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.predict import route_path
from api.problems import Problem, problem_response


class BodyLimit:
    """Refuses bodies over ``limit`` bytes (``upload_limit`` under ``upload_prefix``) with a 413
    problem+json, before the app has parsed any of it: at once when the Content-Length says so, and
    for a chunked body as soon as the bytes received pass the limit. The app is then told the client
    left, so it stops reading, and whatever it answers is dropped."""

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int, upload_prefix: str = "/v1/datasets") -> None:
        self.app, self.limit, self.upload_limit, self.upload_prefix = app, limit, upload_limit, upload_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if route_path(scope).startswith(self.upload_prefix) else self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if seen <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                seen += len(message.get("body", b""))
                if seen <= limit:
                    return message
                if not started:
                    await self._refuse(scope, receive, send, limit)
                    refused = True
            return {"type": "http.disconnect"}

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        problem = Problem(413, "Request too large", f"the body exceeds {limit // 2**20} MiB")
        await problem_response(problem)(scope, receive, send)
