"""The model configurations API (presets seen as model configurations) and model discovery.

    GET    /api/v1/models[?base_model=sdxl]                     local models (`python -m runner models`)
    POST   /api/v1/models/{model_id}/configurations             create a configuration of a model
    GET    /api/v1/models/{model_id}/configurations             list them
    GET    /api/v1/models/{model_id}/configurations/default     the one to use (model's, else base type's)
    POST   /api/v1/models/configurations/base/{base_model}      create a base-type configuration
    GET    /api/v1/models/configurations/base/{base_model}      list them
    GET    /api/v1/models/configurations/{config_id}            one configuration
    PUT    /api/v1/models/configurations/{config_id}            change it (a shipped one: your override)
    DELETE /api/v1/models/configurations/{config_id}            remove it (an override: the shipped returns)

Ids containing ``/`` (preset ids, hub repo ids) may be sent URL-encoded. Reads are open, like
ComfyUI's; writes come from loopback only, unless ``RUNNER_ADMIN_KEY`` is set: then every write
needs ``Authorization: Bearer <key>`` (compared in constant time). Errors are
``{"error": {code, message, fix, field}}`` with 400 (invalid, naming the field), 403, 404 or 409.
File work runs in a worker thread: the store takes a file lock.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from ...core.errors import PresetsError
from ..workflow_io import parse_json

ADMIN_KEY_ENV = "RUNNER_ADMIN_KEY"
PREFIX = "/api/v1/models"
_STATUS = {"preset_not_found": 404, "preset_read_only": 403}


def _error(status: int, code: str, message: str, fix: str = "", field: Any = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "fix": fix, "field": field}}, status=status)


def _from_presets_error(error: PresetsError) -> web.Response:
    from ...core.configurations import error_field

    status = 409 if getattr(error, "conflict", False) else _STATUS.get(error.code, 400)
    return _error(status, error.code, error.message, error.fix, error_field(error))


def _write_allowed(request: web.Request) -> web.Response | None:
    """None when the request may write, else the refusal."""
    key = os.environ.get(ADMIN_KEY_ENV, "")
    if key:
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            return _error(401, "unauthorized", "this server needs the admin key for changes.",
                          f"send `Authorization: Bearer <key>` with the key the server was started with ({ADMIN_KEY_ENV}).")
        return None
    try:
        loopback = ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return _error(403, "forbidden", "changes are accepted from this machine only.",
                      f"run the request on the server's machine, or start the server with {ADMIN_KEY_ENV} set and "
                      "send it as a Bearer token.")
    return None


async def _body(request: web.Request) -> Any:
    fix = "send a JSON object of configuration fields."
    try:
        text = (await request.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PresetsError("preset_invalid", "the request body is not valid JSON (it is not UTF-8).", fix) from None
    # parse_json: nesting and integer-size bombs are errors too, not a 500.
    return parse_json(text, "the request body", "preset_invalid", fix)


async def _run(work: Callable[[], Any], status: int = 200) -> web.Response:
    try:
        result = await asyncio.to_thread(work)
    except PresetsError as error:
        return _from_presets_error(error)
    return web.json_response(result, status=status)


def _param(request: web.Request, name: str) -> str:
    # aiohttp decodes the path once; an id sent encoded twice (%252F) is decoded here.
    return unquote(request.match_info[name])


def _writer(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def guarded(request: web.Request) -> web.Response:
        refusal = _write_allowed(request)
        if refusal is not None:
            return refusal
        try:
            return await handler(request)
        except PresetsError as error:
            return _from_presets_error(error)

    return guarded


def config_routes() -> web.RouteTableDef:
    """The route table; the more specific paths come first (the first match wins)."""
    from ...core import configurations
    from ...core.discovery import listing

    routes = web.RouteTableDef()

    def store() -> configurations.Store:
        return configurations.store()

    @routes.get(PREFIX)
    async def models(request: web.Request) -> web.Response:
        base = request.query.get("base_model")

        def work() -> dict:
            family = configurations.parse_base_model(base)[0] if base else None
            return listing(family)

        return await _run(work)

    @routes.post(PREFIX + "/configurations/base/{base_model}")
    @_writer
    async def create_base(request: web.Request) -> web.Response:
        body, base = await _body(request), _param(request, "base_model")
        if isinstance(body, dict):
            body = {**body, "base_model": body.get("base_model", base)}
        return await _run(lambda: store().create(body, base=True), status=201)

    @routes.get(PREFIX + "/configurations/base/{base_model}")
    async def list_base(request: web.Request) -> web.Response:
        base = _param(request, "base_model")
        return await _run(lambda: {"configurations": store().for_base(base)})

    @routes.get(PREFIX + "/configurations/{config_id:.+}")
    async def get_config(request: web.Request) -> web.Response:
        config_id = _param(request, "config_id")
        return await _run(lambda: store().get(config_id))

    @routes.put(PREFIX + "/configurations/{config_id:.+}")
    @_writer
    async def put_config(request: web.Request) -> web.Response:
        body, config_id = await _body(request), _param(request, "config_id")
        return await _run(lambda: store().update(config_id, body))

    @routes.delete(PREFIX + "/configurations/{config_id:.+}")
    @_writer
    async def delete_config(request: web.Request) -> web.Response:
        config_id = _param(request, "config_id")

        def work() -> dict:
            restored = store().delete(config_id)
            return {"deleted": config_id, "restored": restored}

        return await _run(work)

    @routes.get(PREFIX + "/{model_id:.+}/configurations/default")
    async def model_default(request: web.Request) -> web.Response:
        model_id = _param(request, "model_id")
        base = request.query.get("base_model")
        return await _run(lambda: store().default_for(model_id, base))

    @routes.post(PREFIX + "/{model_id:.+}/configurations")
    @_writer
    async def create_for_model(request: web.Request) -> web.Response:
        body, model_id = await _body(request), _param(request, "model_id")
        return await _run(lambda: store().create(body, model_id=model_id), status=201)

    @routes.get(PREFIX + "/{model_id:.+}/configurations")
    async def list_for_model(request: web.Request) -> web.Response:
        model_id = _param(request, "model_id")
        return await _run(lambda: {"configurations": store().for_model(model_id)})

    return routes
