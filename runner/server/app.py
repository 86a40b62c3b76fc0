"""The aiohttp application: middlewares and the route tables mounted on it.

A route table is an ``aiohttp.web.RouteTableDef`` or a callable ``mount(app)`` (for sub-apps and
static folders). Each API lives in its own table built from the shared :class:`ServerContext`:
ComfyUI's API (:mod:`.comfy_api`), the frontend support (:mod:`.frontend`), and later ones.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence, Union
from urllib.parse import urlsplit

from aiohttp import web

from ...core.errors import PresetsError
from ..engine import Engine
from ..workflow_io import parse_json
from .events import EventHub
from .service import PromptService
from .settings import ServerSettings
from .store import PromptStore

log = logging.getLogger(__name__)

RouteTable = Union[web.RouteTableDef, Callable[[web.Application], None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTEXT_KEY = web.AppKey("context", object)


@dataclass
class ServerContext:
    """What every route table reads: settings, the engine, the queue service and the events."""

    settings: ServerSettings
    engine: Engine
    store: PromptStore
    hub: EventHub
    service: PromptService
    started: float = field(default_factory=time.time)

    @property
    def registry(self) -> Any:
        return self.engine.registry


def json_error(status: int, kind: str, message: str, details: str = "") -> web.Response:
    return web.json_response(
        {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}}, status=status
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@web.middleware
async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 when a browser on another site calls a server on loopback (ComfyUI's origin check;
    not mounted when CORS is configured)."""
    origin = request.headers.get("Origin")
    host = request.headers.get("Host", "")
    if origin:
        try:
            refused = _is_loopback(urlsplit(f"//{host}").hostname or "") and urlsplit(origin).netloc != host
        except ValueError:  # a malformed Host or Origin (an unclosed "[") is no proof of the same site
            refused = True
        if refused:
            log.warning("refused a request from origin %r to %r", origin, host)
            return json_error(403, "forbidden_origin", "Cross-origin request refused",
                              "This server accepts browser requests only from its own address; start it with --enable-cors-header to allow others.")
    return await handler(request)


def cors(settings: ServerSettings) -> Callable:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response()
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = settings.cors_origin or "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Comfy-User"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    return middleware


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON and none carries a stack trace; an unexpected failure is a 500
    with a generic message (logged here)."""
    try:
        return await handler(request)
    except web.HTTPException as ex:
        if ex.status < 400:
            raise
        if ex.content_type == "application/json":
            return web.Response(status=ex.status, body=ex.body, content_type="application/json")
        reason = ex.reason or "error"
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return json_error(ex.status, kinds.get(ex.status, "http_error"), reason, ex.text if ex.text != f"{ex.status}: {reason}" else "")
    except ConnectionResetError:  # the client hung up mid-body: nobody reads this answer
        log.debug("%s %s: the client disconnected", request.method, request.path)
        return json_error(400, "client_disconnected", "The client disconnected before sending the whole request")
    except Exception:  # noqa: BLE001 - the body must not leak a traceback
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "server_error", "Internal server error", "See the server log.")


def create_app(context: ServerContext, tables: Sequence[RouteTable]) -> web.Application:
    """An application serving ``tables`` (in order: the first matching route wins)."""
    settings = context.settings
    middlewares = [json_errors]
    if settings.cors_origin is not None:
        middlewares.insert(0, cors(settings))
    else:
        middlewares.append(origin_guard)
    app = web.Application(middlewares=middlewares, client_max_size=int(settings.max_upload_size_mb * 1024 * 1024))
    app[CONTEXT_KEY] = context
    for table in tables:
        if isinstance(table, web.RouteTableDef):
            app.add_routes(table)
        else:
            table(app)
    return app


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 400 (JSON) when it is not JSON, or is nested too deeply or holds
    an integer too long to read (the runner's limits), 413 when it is too large."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return parse_json(raw.decode("utf-8-sig"), "The request body")
    except UnicodeDecodeError as ex:
        raise bad_request("invalid_json", "The request body is not valid JSON", f"It is not UTF-8 ({ex.reason}).") from None
    except PresetsError as ex:
        raise bad_request("invalid_json", ex.message, "") from None


def query_int(request: web.Request, name: str, default: Optional[int], minimum: Optional[int] = None) -> Optional[int]:
    """The integer query parameter ``name`` (``default`` when absent or empty); 400 when it is
    not an integer, is below ``minimum`` or is too large for SQLite."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("invalid_query", f"{name} must be an integer", f"got {raw!r}") from None
    low = -(2**63) if minimum is None else minimum
    if not low <= value < 2**63:
        raise bad_request("invalid_query", f"{name} is out of range", f"got {raw!r}")
    return value


def bad_request(kind: str, message: str, details: str) -> web.HTTPBadRequest:
    """A 400 in ComfyUI's ``/prompt`` error shape, raised from anywhere in a handler."""
    return web.HTTPBadRequest(
        text=json.dumps({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                         "node_errors": {}}),
        content_type="application/json",
    )
