"""ComfyUI's HTTP and WebSocket API (contract §4): every route at ``/x`` and ``/api/x``."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import logging
import math
import mimetypes
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ...core import cache as pipeline_cache_module
from .. import core_nodes
from . import files, jobs
from .app import CONTEXT_KEY, ServerContext, bad_request, json_error, query_int, read_json
from .frontend import extension_urls, find_web_root, served_version

log = logging.getLogger(__name__)

PACK_NAME = "diffusers-presets"
# The ComfyUI release whose API this server speaks (what /system_stats reports as comfyui_version).
COMFYUI_API_VERSION = "0.3.64"
EXAMPLE_WORKFLOWS = Path(__file__).resolve().parents[2] / "example_workflows"
MODEL_FOLDERS = ("checkpoints", "clip_vision", "diffusers", "embeddings", "loras", "style_models")

_dumps = functools.partial(json.dumps, default=str)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _context(request: web.Request) -> ServerContext:
    return request.app[CONTEXT_KEY]


async def _json_object(request: web.Request, allow_empty: bool = True) -> dict:
    body = await read_json(request)
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise bad_request("invalid_request", "The request body must be a JSON object", "")
    return body


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False


def _refused(ex: files.FileRefused) -> web.Response:
    kinds = {400: "invalid_path", 403: "forbidden_path", 404: "not_found"}
    return json_error(ex.status, kinds.get(ex.status, "invalid_path"), str(ex))


# --- object_info -----------------------------------------------------------------------------------
def _python_module(class_def: type) -> str:
    explicit = getattr(class_def, "RELATIVE_PYTHON_MODULE", None)
    if explicit:
        return explicit
    if class_def in core_nodes.NODE_CLASS_MAPPINGS.values():
        return "nodes"
    return f"custom_nodes.{PACK_NAME}"


def node_info(name: str, class_def: type, display_names: dict[str, str]) -> dict:
    """ComfyUI's ``/object_info`` entry for a V1 class."""
    input_types = class_def.INPUT_TYPES()
    outputs = list(getattr(class_def, "RETURN_TYPES", ()) or ())
    info = {
        "input": input_types,
        "input_order": {key: list(value.keys()) for key, value in input_types.items() if isinstance(value, dict)},
        "output": outputs,
        "output_is_list": list(getattr(class_def, "OUTPUT_IS_LIST", None) or [False] * len(outputs)),
        "output_name": list(getattr(class_def, "RETURN_NAMES", None) or outputs),
        "name": name,
        "display_name": display_names.get(name, name),
        "description": getattr(class_def, "DESCRIPTION", "") or "",
        "python_module": _python_module(class_def),
        "category": str(getattr(class_def, "CATEGORY", "sd") or "sd"),
        "output_node": bool(getattr(class_def, "OUTPUT_NODE", False)),
        "output_tooltips": list(getattr(class_def, "OUTPUT_TOOLTIPS", None) or []),
    }
    for flag in ("DEPRECATED", "EXPERIMENTAL", "API_NODE"):
        if getattr(class_def, flag, False):
            info[flag.lower()] = True
    return info


def object_info(registry: dict[str, type], only: Optional[str] = None) -> dict:
    names = core_nodes.display_names()
    out = {}
    for name, class_def in registry.items():
        if only is not None and name != only:
            continue
        try:
            out[name] = node_info(name, class_def, names)
        except Exception:  # noqa: BLE001 - as in ComfyUI: one broken node is left out, not the list
            log.exception("object_info: %s failed; left out", name)
    return out


# --- system ----------------------------------------------------------------------------------------
def _devices() -> list[dict]:
    """The torch devices once torch is loaded (it loads with the first pipeline); before that,
    the CPU as ComfyUI reports it on a CPU-only machine."""
    import psutil

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            devices.append({
                "name": f"cuda:{index} {torch.cuda.get_device_name(index)}",
                "type": "cuda",
                "index": index,
                "vram_total": total,
                "vram_free": free,
                "torch_vram_total": torch.cuda.memory_reserved(index),
                "torch_vram_free": torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index),
            })
        return devices
    memory = psutil.virtual_memory()
    return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": memory.total, "vram_free": memory.available,
             "torch_vram_total": memory.total, "torch_vram_free": memory.available}]


def system_stats(frontend: str) -> dict:
    """``frontend``: the version of the frontend being served (see :func:`.frontend.served_version`)."""
    import psutil

    memory = psutil.virtual_memory()
    templates = _version("comfyui-workflow-templates")
    return {
        "system": {
            "os": os.name,
            "ram_total": memory.total,
            "ram_free": memory.available,
            "comfyui_version": COMFYUI_API_VERSION,
            "runner_version": _version(PACK_NAME),
            "required_frontend_version": frontend,
            "installed_templates_version": templates,
            "required_templates_version": templates,
            "python_version": sys.version,
            "pytorch_version": _version("torch"),
            "embedded_python": False,
            "argv": [],
        },
        "devices": _devices(),
    }


def model_file_list(folders: list[Path]) -> list[dict]:
    """ComfyUI's ``/experiment/models/{folder}`` entries: each file under each folder (dot files
    and links that leave the folder skipped), with the index of its folder."""
    out = []
    for index, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if any(part.startswith(".") for part in relative.parts) or not files.is_inside(folder, str(path)):
                continue
            if path.is_file():
                stat = path.stat()
                out.append({"name": relative.as_posix(), "pathIndex": index, "modified": stat.st_mtime,
                            "created": stat.st_ctime, "size": stat.st_size})
    return out


# --- the table -------------------------------------------------------------------------------------
async def _clear_or_delete(request: web.Request, clear: Callable[[], Any],
                           delete: Callable[[list[str]], Any]) -> web.Response:
    """``POST /queue`` and ``POST /history``: ``{"clear": true}`` and/or ``{"delete": [ids]}``."""
    body = await _json_object(request)
    if body.get("clear"):
        clear()
    if "delete" in body:
        ids = body["delete"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return json_error(400, "invalid_request", "delete must be a list of prompt ids")
        delete(ids)
    return web.Response(status=200)


def comfy_routes(context: ServerContext) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    service, store, settings = context.service, context.store, context.settings
    features = context.hub.server_features
    frontend_version = served_version(find_web_root(settings)[0])

    def both(method: str, path: str) -> Callable:
        def register(handler: Callable) -> Callable:
            routes.route(method, path)(handler)
            routes.route(method, "/api" + path)(handler)
            return handler

        return register

    @both("GET", "/ws")
    async def websocket(request: web.Request) -> web.StreamResponse:
        return await context.hub.handle(request)

    # --- prompts -------------------------------------------------------------------------------
    @both("GET", "/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return _json({"exec_info": {"queue_remaining": service.queue_remaining()}})

    @both("POST", "/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        body = await _json_object(request, allow_empty=False)

        if "prompt" not in body:
            raise bad_request("no_prompt", "No prompt provided", "No prompt provided")
        prompt_id = body.get("prompt_id")
        if prompt_id is not None:
            try:
                if not isinstance(prompt_id, str) or str(uuid.UUID(prompt_id)) != prompt_id.lower():
                    raise ValueError
            except ValueError:
                raise bad_request("invalid_prompt_id", "Invalid prompt_id", "prompt_id must be a canonical UUID string.")
        extra_data = body.get("extra_data", {})
        if not isinstance(extra_data, dict):
            raise bad_request("invalid_prompt", "Invalid prompt", "extra_data must be a JSON object.")
        client_id = body.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            raise bad_request("invalid_prompt", "Invalid prompt", "client_id must be a string.")
        number = body.get("number")
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float)) or not _finite(number)):
            raise bad_request("invalid_prompt", "Invalid prompt", "number must be a finite number.")
        targets = body.get("partial_execution_targets")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            raise bad_request("invalid_prompt", "Invalid prompt", "partial_execution_targets must be a list of node ids.")
        submitted = await service.submit(
            body["prompt"], extra_data, client_id, bool(body.get("front")), number, prompt_id, targets
        )
        return _json(submitted.body, submitted.status)

    @both("GET", "/queue")
    async def get_queue(request: web.Request) -> web.Response:
        running = store.running()
        pending = store.pending()
        return _json({"queue_running": [i.as_comfy() for i in running], "queue_pending": [i.as_comfy() for i in pending]})

    @both("POST", "/queue")
    async def post_queue(request: web.Request) -> web.Response:
        return await _clear_or_delete(request, service.clear_pending, service.delete_pending)

    @both("POST", "/interrupt")
    async def post_interrupt(request: web.Request) -> web.Response:
        body = await _json_object(request)
        prompt_id = body.get("prompt_id")
        service.interrupt(prompt_id if isinstance(prompt_id, str) else None)
        return web.Response(status=200)

    @both("POST", "/free")
    async def post_free(request: web.Request) -> web.Response:
        body = await _json_object(request)
        service.request_free(bool(body.get("unload_models")), bool(body.get("free_memory")))
        return web.Response(status=200)

    # --- history ---------------------------------------------------------------------------------
    @both("GET", "/history")
    async def get_history(request: web.Request) -> web.Response:
        max_items = query_int(request, "max_items", None)
        offset = query_int(request, "offset", -1)
        records = store.history(max_items, offset)
        return _json({r.prompt_id: r.entry for r in records})

    @both("GET", "/history/{prompt_id}")
    async def get_history_item(request: web.Request) -> web.Response:
        record = store.history_get(request.match_info["prompt_id"])
        return _json({record.prompt_id: record.entry} if record else {})

    @both("POST", "/history")
    async def post_history(request: web.Request) -> web.Response:
        return await _clear_or_delete(request, store.clear_history, store.delete_history)

    # --- files -----------------------------------------------------------------------------------
    @both("GET", "/view")
    async def view(request: web.Request) -> web.StreamResponse:
        query = request.query
        if "filename" not in query:
            return json_error(404, "not_found", "filename is required")
        try:
            path = files.view_path(query["filename"], query.get("subfolder", ""), query.get("type", "output"))
        except files.FileRefused as ex:
            return _refused(ex)
        disposition = {"Content-Disposition": 'filename="{}"'.format(path.name.replace('"', ""))}
        preview, channel = query.get("preview"), query.get("channel", "rgba")
        if preview or channel in ("rgb", "a"):
            loop = asyncio.get_running_loop()
            try:
                converted = await loop.run_in_executor(None, files.transform_image, path, preview, channel)
            except Exception as ex:  # noqa: BLE001 - PIL's errors for a file that is not an image
                return json_error(400, "not_an_image", f"{path.name} cannot be converted", type(ex).__name__)
            if converted is not None:
                return web.Response(body=converted[0], content_type=converted[1], headers=disposition)
        return web.FileResponse(path, headers={**disposition, "Content-Type": files.safe_content_type(path.name),
                                               "X-Content-Type-Options": "nosniff"})

    async def _upload(request: web.Request) -> tuple[dict, Optional[web.Response]]:
        if not request.content_type.startswith("multipart/"):
            return {}, json_error(415, "unsupported_media_type", "Send the image as multipart/form-data",
                                  f"got {request.content_type}")
        try:
            post = await request.post()
        except web.HTTPException:
            raise
        except (ValueError, HttpProcessingError) as ex:  # a malformed body or part header
            return {}, json_error(400, "invalid_request", "The form data cannot be read", str(ex))
        image = post.get("image")
        if image is None or not hasattr(image, "file") or not image.filename:
            return {}, json_error(400, "invalid_request", "No image file in the 'image' field")
        kind = post.get("type") or "input"
        kind = kind if kind in files.FOLDER_TYPES else "input"
        return {
            "data": image.file.read(),
            "filename": image.filename,
            "subfolder": str(post.get("subfolder") or ""),
            "type": kind,
            "overwrite": str(post.get("overwrite", "")).lower() in ("true", "1"),
            "original_ref": post.get("original_ref"),
        }, None

    async def _store_upload(form: dict) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            name = await loop.run_in_executor(
                None, files.save_upload, form["data"], form["filename"], form["subfolder"], form["type"], form["overwrite"]
            )
        except files.FileRefused as ex:
            return _refused(ex)
        return _json({"name": name, "subfolder": form["subfolder"], "type": form["type"]})

    @both("POST", "/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        form, error = await _upload(request)
        return error or await _store_upload(form)

    @both("POST", "/upload/mask")
    async def upload_mask(request: web.Request) -> web.Response:
        form, error = await _upload(request)
        if error:
            return error
        try:
            ref = json.loads(form["original_ref"] or "")
            if not isinstance(ref, dict) or "filename" not in ref:
                raise ValueError
        except (ValueError, TypeError):
            return json_error(400, "invalid_request", "original_ref must be JSON with filename, subfolder and type")
        try:
            original = files.view_path(str(ref["filename"]), str(ref.get("subfolder") or ""), str(ref.get("type") or "input"))
        except files.FileRefused as ex:
            return _refused(ex)
        try:
            form["data"] = await asyncio.get_running_loop().run_in_executor(None, files.paste_mask, form["data"], original)
        except Exception as ex:  # noqa: BLE001 - PIL's errors for a file that is not an image
            return json_error(400, "not_an_image", "The mask or the original is not an image", type(ex).__name__)
        return await _store_upload(form)

    # --- nodes, models, system ---------------------------------------------------------------------
    @both("GET", "/object_info")
    async def get_object_info(request: web.Request) -> web.Response:
        info = await asyncio.get_running_loop().run_in_executor(None, object_info, context.registry)
        return _json(info)

    @both("GET", "/object_info/{node_class}")
    async def get_object_info_class(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = await asyncio.get_running_loop().run_in_executor(None, object_info, context.registry, name)
        return _json(info)

    @both("GET", "/system_stats")
    async def get_system_stats(request: web.Request) -> web.Response:
        return _json(system_stats(frontend_version))

    @both("GET", "/features")
    async def get_features(request: web.Request) -> web.Response:
        return _json(features)

    def model_folders() -> list[str]:
        return sorted({*MODEL_FOLDERS, *getattr(context.engine.host, "extra_folders", {})})

    @both("GET", "/models")
    async def get_models(request: web.Request) -> web.Response:
        return _json(model_folders())

    @both("GET", "/models/{folder}")
    async def get_model_files(request: web.Request) -> web.Response:
        name = request.match_info["folder"]
        if name not in model_folders():
            return json_error(404, "not_found", f"no model folder {name!r}")
        names = await asyncio.get_running_loop().run_in_executor(None, context.engine.host.model_files, name)
        return _json(names)

    # The model library sidebar (ComfyUI's model_manager: "experiment" is part of its path).
    @both("GET", "/experiment/models")
    async def get_experiment_models(request: web.Request) -> web.Response:
        host = context.engine.host
        return _json([{"name": name, "folders": [str(f) for f in host.model_folders(name)]} for name in model_folders()])

    @both("GET", "/experiment/models/{folder}")
    async def get_experiment_model_files(request: web.Request) -> web.Response:
        name = request.match_info["folder"]
        if name not in model_folders():
            return json_error(404, "not_found", f"no model folder {name!r}")
        folders = context.engine.host.model_folders(name)
        return _json(await asyncio.get_running_loop().run_in_executor(None, model_file_list, folders))

    @both("GET", "/embeddings")
    async def get_embeddings(request: web.Request) -> web.Response:
        names = await asyncio.get_running_loop().run_in_executor(None, context.engine.host.model_files, "embeddings")
        return _json([os.path.splitext(n)[0] for n in names])

    @both("GET", "/extensions")
    async def get_extensions(request: web.Request) -> web.Response:
        return _json(extension_urls())

    @both("GET", "/workflow_templates")
    async def get_workflow_templates(request: web.Request) -> web.Response:
        names = sorted(p.stem for p in EXAMPLE_WORKFLOWS.glob("*.json"))
        return _json({PACK_NAME: names} if names else {})

    @both("GET", "/workflow_templates/{pack}/{name}")
    async def get_workflow_template(request: web.Request) -> web.StreamResponse:
        pack, name = request.match_info["pack"], request.match_info["name"]
        try:
            name = files.check_name(name)
        except files.FileRefused as ex:
            return _refused(ex)
        path = EXAMPLE_WORKFLOWS / name
        if pack != PACK_NAME or name.startswith(".") or not path.is_file():
            return json_error(404, "not_found", f"no template {pack}/{name}")
        content_type = "application/json" if path.suffix == ".json" else (mimetypes.guess_type(name)[0] or "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": content_type})

    @both("GET", "/health")
    async def health(request: web.Request) -> web.Response:
        current = service.current
        body = {
            "status": "ok" if service.accepting else "shutting_down",
            "version": _version(PACK_NAME),
            "queue_remaining": service.queue_remaining(),
            "queue_pending": store.pending_count(),
            "running": current.prompt_id if current else None,
            "history": store.history_count(),
            "loaded_pipelines": pipeline_cache_module.loaded_count(),
            "torch_loaded": "torch" in sys.modules,
            "uptime_s": round(time.time() - context.started, 1),
        }
        return _json(body, 200 if service.accepting else 503)

    jobs.add_routes(routes, context)

    # aiohttp tries the longest path prefix first, so this answers only /api routes nobody
    # serves, before the frontend's static root at / would (with a non-JSON 404).
    @routes.route("*", "/api/{tail:.*}")
    async def unknown_api(request: web.Request) -> web.Response:
        return json_error(404, "not_found", f"no route {request.method} {request.path}")

    return routes
