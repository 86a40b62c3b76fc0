"""The ComfyUI canvas without ComfyUI: the frontend's web root and the per-user routes it needs.

Everything is one route table, mounted after ComfyUI's API (``main.default_tables``)::

    app.add_routes(frontend_routes(settings))

It serves:

- ``GET /`` → the frontend's ``index.html`` (no-cache), and every other file of its ``static/``
  folder at the root (``/assets/…``, ``/fonts/…``). The folder is ``settings.front_end_root``,
  else the installed ``comfyui-frontend-package``. Without one, ``/`` is a short page that says
  how to install it; the API still works.
- ``/api/users``, ``/api/settings[/{id}]``, ``/api/i18n``, ``/api/global_subgraphs``,
  ``/api/userdata…`` and ``/api/v2/userdata``, also without the ``/api`` prefix, as in ComfyUI;
  ``/templates/index.json`` (no core templates) and ``/templates/index_logo.json``.
- ``/extensions/diffusers-presets/*.js``: this server's frontend extensions (``web/``), listed
  by ``GET /api/extensions``. ``default_graph.js`` loads the demo workflow where the frontend
  would open ComfyUI's default graph, whose nodes this server lacks.

One user, ``default``: settings live in ``<user_directory>/default/comfy.settings.json`` and
saved workflows under ``<user_directory>/default/workflows/``, where ComfyUI keeps them, so a
user directory moves between the two. The ``Comfy-User`` header is ignored. Paths that leave
the user's folder (``..``, absolute paths, symlinks pointing out) are refused with a JSON 400
or 403; listing a missing folder is a JSON 404, which the frontend reads as "no files".
"""

from __future__ import annotations

import contextlib
import html
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from aiohttp import web

from ...core.files import write_atomically
from .app import Handler, bad_request, json_error, read_json
from .files import is_inside, safe_content_type
from .settings import ServerSettings

log = logging.getLogger(__name__)

USER = "default"
SETTINGS_FILE = "comfy.settings.json"
FRONTEND_PIN = "comfyui-frontend-package==1.58.1"
# ComfyUI 0.3.64 pins it; the canvas test runs it beside FRONTEND_PIN.
OLDEST_VERIFIED_FRONTEND = "1.27.10"
# This server's own frontend extensions (ES modules), served where ComfyUI serves a pack's
# web directory and listed by GET /api/extensions.
WEB_DIR = Path(__file__).resolve().parent / "web"
EXTENSIONS_URL = "/extensions/diffusers-presets"


def extension_urls() -> list[str]:
    return [f"{EXTENSIONS_URL}/{path.name}" for path in sorted(WEB_DIR.glob("*.js"))]


# --- locating the frontend ---------------------------------------------------------------------
def find_web_root(settings: ServerSettings) -> tuple[Optional[Path], str]:
    """The frontend's static folder (holding ``index.html``), or ``None`` and why not."""
    if settings.front_end_root is not None:
        root = Path(settings.front_end_root).expanduser().resolve()
        if (root / "index.html").is_file():
            return root, ""
        return None, f"--front-end-root {root} has no index.html."
    spec = importlib.util.find_spec("comfyui_frontend_package")
    for location in (spec.submodule_search_locations or []) if spec else []:
        root = Path(location) / "static"
        if (root / "index.html").is_file():
            return root, ""
    return None, "The ComfyUI frontend (comfyui-frontend-package) is not installed."


def served_version(root: Optional[Path]) -> str:
    """The version of the frontend served from ``root``: the package metadata installed beside
    it (``pip install --target`` and site-packages both keep it there), else the oldest version
    verified with this server. It goes into ``/system_stats`` as ``required_frontend_version``,
    which the frontend compares with its own to warn that it is outdated."""
    if root is not None:
        for dist in importlib.metadata.distributions(path=[str(root.parent.parent)]):
            if (dist.metadata["Name"] or "").lower().replace("_", "-") == "comfyui-frontend-package":
                return dist.version
    return OLDEST_VERIFIED_FRONTEND


def _install_page(reason: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Diffusers Presets server</title></head>
<body style="font-family: sans-serif; max-width: 44em; margin: 3em auto">
<h1>The ComfyUI canvas is not installed</h1>
<p>{html.escape(reason)}</p>
<p>Install it into this Python environment, then restart <code>python -m runner serve</code>:</p>
<pre>pip install {FRONTEND_PIN}</pre>
<p>(or, from a checkout of the pack: <code>pip install ".[frontend]"</code>).</p>
<p>The HTTP API works without it: <code>POST /api/prompt</code>, <code>GET /api/history</code>,
<code>/ws</code>, as in ComfyUI.</p>
</body></html>
"""


# --- helpers -----------------------------------------------------------------------------------
class _UserFiles:
    """The single user's folder, with every path checked before it is touched."""

    def __init__(self, user_directory: Path) -> None:
        self.root = Path(user_directory) / USER

    def resolve(self, relative: str) -> Union[Path, web.Response]:
        """``relative`` inside the user's folder, or the JSON error response that refuses it."""
        parts = relative.replace("\\", "/").split("/")
        if (
            not relative
            or "\x00" in relative
            or relative.startswith(("/", "\\"))
            or os.path.isabs(relative)
            or os.path.splitdrive(relative)[0]  # C:… on Windows
            or ".." in parts
        ):
            return json_error(400, "invalid_path", f"{relative!r} is not a path inside the user folder.")
        path = self.root / Path(*[part for part in parts if part not in ("", ".")] or ["."])
        if not is_inside(self.root, str(path)):
            return json_error(403, "path_not_allowed", f"{relative!r} leads outside the user folder.")
        return path

    def info(self, path: Path, relative_to: Path) -> dict[str, Any]:
        stat = path.stat()
        return {
            "path": path.relative_to(relative_to).as_posix(),
            "size": stat.st_size,
            "modified": int(stat.st_mtime * 1000),
            "created": int(stat.st_ctime * 1000),
        }

    def walk(self, folder: Path, recurse: bool) -> list[Path]:
        """Regular files under ``folder`` that stay inside the user's folder, sorted; dot files
        skipped (as ComfyUI's glob does). Unreadable entries are left out, never raised."""
        found = []
        for current, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recurse else []
            for name in files:
                path = Path(current) / name
                if name.startswith(".") or not is_inside(self.root, str(path)):
                    continue
                if path.is_file():
                    found.append(path)
        return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


# --- routes ------------------------------------------------------------------------------------
def frontend_routes(settings: ServerSettings) -> web.RouteTableDef:
    """Every route the ComfyUI frontend needs beyond the queue/execution API (module docstring)."""
    routes = web.RouteTableDef()
    files = _UserFiles(settings.user_directory)
    settings_path = files.root / SETTINGS_FILE

    def api(method: str, path: str) -> Callable[[Handler], Handler]:
        """Register at ``/api{path}`` and ``{path}``, as ComfyUI does."""

        def register(handler: Handler) -> Handler:
            routes.route(method, "/api" + path)(handler)
            routes.route(method, path)(handler)
            return handler

        return register

    web_root, missing_reason = find_web_root(settings)

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        if web_root is None:
            return web.Response(text=_install_page(missing_reason), content_type="text/html")
        # A new frontend version must replace the cached page, whose asset names it lists.
        return web.FileResponse(
            web_root / "index.html",
            headers={"Cache-Control": "no-cache", "Content-Type": "text/html; charset=utf-8"},
        )

    # --- users and settings ---
    @api("GET", "/users")
    async def get_users(request: web.Request) -> web.Response:
        # ComfyUI's single-user answer; without a "users" key the frontend skips the user picker.
        return web.json_response({"storage": "server", "migrated": files.root.is_dir()})

    def read_settings() -> dict[str, Any]:
        try:
            data = json.loads(settings_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A broken file must not blank the page: the frontend gives up on a failed GET.
            log.warning("ignoring unreadable settings file %s: %s", settings_path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def write_settings(values: dict[str, Any]) -> None:
        try:  # the browser reads this file back with JSON.parse, which knows no NaN or Infinity
            text = json.dumps(values, indent=4, allow_nan=False)
        except ValueError:
            raise bad_request("invalid_json", "Settings cannot hold NaN or Infinity.",
                              "Send finite numbers (or null).") from None
        settings_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(settings_path, text)

    @api("GET", "/settings")
    async def get_settings(request: web.Request) -> web.Response:
        return web.json_response(read_settings())

    @api("GET", "/settings/{id}")
    async def get_setting(request: web.Request) -> web.Response:
        return web.json_response(read_settings().get(request.match_info["id"]))

    @api("POST", "/settings")
    async def post_settings(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return json_error(400, "invalid_json", "POST /settings takes a JSON object {id: value}.")
        # No await between the read and the write: concurrent posts cannot lose each other's keys.
        write_settings({**read_settings(), **body})
        return web.Response(status=200)

    @api("POST", "/settings/{id}")
    async def post_setting(request: web.Request) -> web.Response:
        body = await read_json(request)
        values = read_settings()
        values[request.match_info["id"]] = body
        write_settings(values)
        return web.Response(status=200)

    @api("GET", "/i18n")
    async def get_i18n(request: web.Request) -> web.Response:
        return web.json_response({})  # no custom-node translations

    @api("GET", "/global_subgraphs")
    async def get_global_subgraphs(request: web.Request) -> web.Response:
        return web.json_response({})  # no blueprint subgraphs

    # ComfyUI serves its core templates here; none of them runs without ComfyUI's nodes, so the
    # list is empty (the pack's examples come from /api/workflow_templates). The frontend uses
    # these only with a JSON content type, and a 404 would show as an error in the console.
    @routes.get("/templates/index.json")
    async def get_core_templates(request: web.Request) -> web.Response:
        return web.json_response([])

    @routes.get("/templates/index_logo.json")
    async def get_template_logos(request: web.Request) -> web.Response:
        return web.json_response({})

    # --- userdata: the user's saved workflows and other files ---
    @api("GET", "/userdata")
    async def list_userdata(request: web.Request) -> web.Response:
        query = request.rel_url.query
        directory = query.get("dir", "")
        if not directory:
            return json_error(400, "invalid_path", "Give the folder to list as ?dir=.")
        folder = files.resolve(directory)
        if isinstance(folder, web.Response):
            return folder
        if not folder.is_dir():
            return json_error(404, "not_found", f"No folder {directory!r} in the user folder.")
        full_info = query.get("full_info", "").lower() == "true"
        split = query.get("split", "").lower() == "true"
        results: list[Any] = []
        for path in files.walk(folder, recurse=query.get("recurse", "").lower() == "true"):
            relative = path.relative_to(folder).as_posix()
            if not full_info:
                results.append([relative, *relative.split("/")] if split else relative)
                continue
            with contextlib.suppress(OSError):  # vanished or unreadable since the walk
                results.append(files.info(path, folder))
        return web.json_response(results)

    @api("GET", "/v2/userdata")
    async def list_userdata_v2(request: web.Request) -> web.Response:
        requested = request.rel_url.query.get("path", "")
        if requested:
            target = files.resolve(requested)
            if isinstance(target, web.Response):
                return target
        else:
            target = files.root
        if not target.exists():
            if target == files.root:
                return web.json_response([])  # a new user has no folder yet
            return json_error(404, "not_found", f"No path {requested!r} in the user folder.")
        if not target.is_dir():
            return json_error(400, "invalid_path", f"{requested!r} is not a folder.")
        results = []
        for current, dirs, names in os.walk(target):
            dirs[:] = [d for d in dirs if is_inside(files.root, str(Path(current) / d))]
            for name in dirs:
                path = Path(current) / name
                results.append({"name": name, "path": path.relative_to(files.root).as_posix(), "type": "directory"})
            for name in names:
                path = Path(current) / name
                if not is_inside(files.root, str(path)):
                    continue
                entry: dict[str, Any] = {"name": name, "path": path.relative_to(files.root).as_posix(), "type": "file"}
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    entry.update(size=stat.st_size, modified=stat.st_mtime)
                results.append(entry)
        results.sort(key=lambda entry: (entry["type"] != "directory", entry["name"].lower()))
        return web.json_response(results)

    def user_file(request: web.Request, key: str = "file") -> Union[Path, web.Response]:
        return files.resolve(request.match_info.get(key, ""))

    def existing_user_file(request: web.Request) -> Union[Path, web.Response]:
        """The request's ``{file}``, or the JSON 400/403/404 that refuses it."""
        path = user_file(request)
        if isinstance(path, Path) and not path.is_file():
            return json_error(404, "not_found", f"No file {request.match_info['file']!r} in the user folder.")
        return path

    @api("GET", "/userdata/{file}")
    async def get_userdata(request: web.Request) -> web.StreamResponse:
        path = existing_user_file(request)
        if isinstance(path, web.Response):
            return path
        if path == files.root / "user.css":
            headers = {"Content-Type": "text/css", "Content-Disposition": "inline"}
        else:
            # User files are arbitrary content: never rendered in the app's origin.
            headers = {"Content-Type": safe_content_type(path.name), "Content-Disposition": "attachment"}
        return web.FileResponse(path, headers={**headers, "X-Content-Type-Options": "nosniff"})

    def reply_with(path: Path, full_info: bool) -> web.Response:
        return web.json_response(files.info(path, files.root) if full_info else path.relative_to(files.root).as_posix())

    @api("POST", "/userdata/{file}")
    async def post_userdata(request: web.Request) -> web.Response:
        path = user_file(request)
        if isinstance(path, web.Response):
            return path
        query = request.rel_url.query
        if query.get("overwrite", "true") == "false" and path.exists():
            return json_error(409, "file_exists", f"{request.match_info['file']!r} already exists.")
        if path.is_dir():
            return json_error(400, "invalid_path", f"{request.match_info['file']!r} is a folder.")
        body = await request.read()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, body)
        except OSError as exc:
            return json_error(400, "invalid_path", f"Cannot save {request.match_info['file']!r}: {exc.strerror}.")
        return reply_with(path, query.get("full_info", "").lower() == "true")

    @api("DELETE", "/userdata/{file}")
    async def delete_userdata(request: web.Request) -> web.Response:
        path = existing_user_file(request)
        if isinstance(path, web.Response):
            return path
        path.unlink()
        return web.Response(status=204)

    @api("POST", "/userdata/{file}/move/{dest}")
    async def move_userdata(request: web.Request) -> web.Response:
        source = existing_user_file(request)
        if isinstance(source, web.Response):
            return source
        dest = user_file(request, "dest")
        if isinstance(dest, web.Response):
            return dest
        query = request.rel_url.query
        if query.get("overwrite", "true") == "false" and dest.exists():
            return json_error(409, "file_exists", f"{request.match_info['dest']!r} already exists.")
        if dest.is_dir():
            return json_error(400, "invalid_path", f"{request.match_info['dest']!r} is a folder.")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)
        except OSError as exc:
            return json_error(400, "invalid_path", f"Cannot move to {request.match_info['dest']!r}: {exc.strerror}.")
        return reply_with(dest, query.get("full_info", "").lower() == "true")

    routes.static(EXTENSIONS_URL, WEB_DIR)

    # --- the web root: last, so the routes above win on their paths ---
    if web_root is not None:
        routes.static("/", web_root)
    else:
        log.info("%s / shows how to install it.", missing_reason)
    return routes
