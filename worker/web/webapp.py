"""The ASGI application of ``claimwire web``: pages, the JSON API and its docs, static
files (all served by claimwire itself: nothing from a CDN), security headers and
errors that say what was wrong (never a traceback)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.core.settings import Settings
from worker.web import rendering
from worker.web.webauth import Guard, SecurityHeaders, is_loopback

log = structlog.get_logger("claimwire.web")

TITLE = "claimwire"


def allowed_hosts(settings: Settings, bind_host: str) -> frozenset[str]:
    """Host names served: ``CLAIMWIRE_WEB_ALLOWED_HOSTS``, else (on loopback) the
    loopback names, else any (empty set)."""
    names = {h.strip().lower() for h in settings.web_allowed_hosts.split(",") if h.strip()}
    if names:
        return frozenset(names)
    if is_loopback(bind_host):
        return frozenset({"localhost", "127.0.0.1", "::1", bind_host.strip("[]").lower()})
    return frozenset()


def _message(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.strip("'\"") if isinstance(exc, LookupError) else text


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


class DropEmptyParams:
    """``?q=steelworks&speaker=&since=`` is ``?q=steelworks``: a filter form's empty
    fields mean "no filter", never a malformed value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if v.strip()]
            if len(kept) != len(pairs):
                scope = {**scope, "query_string": urlencode(kept).encode("latin-1")}
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, bind_host: str = "127.0.0.1") -> FastAPI:
    """The app over ``settings``' database; ``bind_host`` is the address it listens on
    (it decides which host names it answers to)."""
    import worker.celery_app  # noqa: F401 (registers the sender of after-commit messages)
    from worker.claims.fulltext import SearchQueryError
    from worker.feeds.subscriptions import FeedNotFound
    from worker.jobs.lifecycle import JobNotFound, JobStateError
    from worker.web import api, views
    from worker.web.actions import BadInput
    from worker.web.listings import BadCursor, NotFound
    from worker.web.reads import QueryTimeout

    app = FastAPI(
        title="claimwire",
        description=(
            "Claims, claim clusters, speakers, articles, feeds, jobs and status of a "
            "claimwire store. Reads are open; changes need `Authorization: Bearer <token>` "
            "(CLAIMWIRE_WEB_TOKEN). Lists page with `cursor` (the `next_cursor` of the "
            "previous page); `/api/v1/<list>.csv` and `.jsonl` stream a whole list."
        ),
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.guard = Guard(settings.web_token)
    app.state.templates = rendering.environment()

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/v1")

    def error(request: Request, status: int, message: str, headers: Any = None) -> Response:
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=status, headers=headers)
        back = "/" + request.url.path.strip("/").split("/")[0]
        html = app.state.templates.get_template("error.html").render(
            title=f"Error {status}",
            status=status,
            message=message,
            back=back if request.method == "POST" else None,
            path=request.url.path,
            writable=app.state.guard.writable,
            signed_in=app.state.guard.signed_in(request),
            csrf=app.state.guard.csrf_for(request),
            flash=None,
        )
        return HTMLResponse(html, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 400, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no page at {request.url.path}"
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error(request, exc.status_code, message, getattr(exc, "headers", None))

    user_errors: list[tuple[type[Exception], int]] = [
        (BadInput, 400),
        (BadCursor, 400),
        (SearchQueryError, 400),
        (NotFound, 404),
        (FeedNotFound, 404),
        (JobNotFound, 404),
        (JobStateError, 409),
        (QueryTimeout, 503),
    ]
    for exc_type, status in user_errors:

        async def on_user_error(request: Request, exc: Exception, status: int = status) -> Response:
            return error(request, status, _message(exc))

        app.add_exception_handler(exc_type, on_user_error)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        from worker.core.db import database_error, is_locked

        sa_exc = __import__("sqlalchemy.exc", fromlist=["OperationalError"])
        if isinstance(exc, sa_exc.OperationalError):
            log.warning("web_database_error", path=request.url.path, error=database_error(exc))
            return error(
                request, 503, database_error(exc) if is_locked(exc) else "database unavailable"
            )
        log.error("web_internal_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        return error(request, 500, "internal error (logged by the server)")

    app.include_router(api.router)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=str(rendering.STATIC)), name="static")
    app.add_middleware(DropEmptyParams)
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts(settings, bind_host))
    return app
