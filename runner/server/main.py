"""``python -m runner serve``: build the server from its options and run it until SIGINT/SIGTERM.

    python -m runner serve [--listen HOST] [--port 8188] [--output-dir DIR] [--input-dir DIR]
                           [--models-dir DIR] [--model PRESET=SOURCE ...] [--enable-cors-header [ORIGIN]]
                           [--max-upload-size MB] [--preview-method none|auto|latent2rgb]
                           [--user-directory DIR] [--database-url URL] [--front-end-root DIR]
                           [--model-alias NAME=PRESET ...] [--quality-map FAMILY:QUALITY=PRESET ...]
                           [--image-ttl SECONDS] [--base-url URL] [--api-max-queue N]

torch and diffusers are not imported here: they load on the worker thread when the first prompt
needs a pipeline, so the server answers HTTP within about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from aiohttp import web

from ...core.errors import PresetsError
from ...core.host import get_host
from .. import core_nodes
from ..engine import Engine
from ..host_setup import configure_host, parse_assignment
from .app import RouteTable, ServerContext, create_app
from .comfy_api import comfy_routes
from .config_routes import config_routes
from .events import EventHub
from .frontend import frontend_routes
from .openai_api import openai_routes
from .openai_params import ApiOptions, parse_assignment_map, parse_quality_map
from .service import PromptService
from .settings import ServerSettings
from .store import SQLiteStore

log = logging.getLogger(__name__)

TableFactory = Callable[[ServerContext], RouteTable]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner serve", description="Serve ComfyUI's HTTP and WebSocket API.")
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188, help="port (default 8188)")
    parser.add_argument("--output-dir", type=Path, default=Path("output"))
    parser.add_argument("--input-dir", type=Path, default=Path("input"))
    parser.add_argument("--temp-dir", type=Path, default=Path("temp"))
    parser.add_argument("--models-dir", type=Path, help="models folder (default $MODEL_BASE_PATH, else ./models)")
    parser.add_argument("--extra-model-paths", type=Path, action="append", default=[], metavar="YAML")
    parser.add_argument("--model", action="append", default=[], metavar="PRESET=SOURCE",
                        help="load PRESET's weights from SOURCE: 'tiny', a folder or a file (repeatable)")
    parser.add_argument("--enable-cors-header", nargs="?", const="*", default=None, metavar="ORIGIN",
                        help="send CORS headers (default origin '*') and drop the same-origin check")
    parser.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB", help="largest request body (default 100)")
    parser.add_argument("--preview-method", choices=("none", "auto", "latent2rgb"), default="auto")
    parser.add_argument("--user-directory", type=Path, default=Path("user"))
    parser.add_argument("--database-url", default="", help="sqlite:///PATH (default sqlite:///<user dir>/runner.db)")
    parser.add_argument("--front-end-root", type=Path, help="a folder with the ComfyUI frontend's index.html")
    parser.add_argument("--max-history", type=int, default=10000, help="history entries kept (default 10000)")
    parser.add_argument("--max-history-age", type=float, default=0, metavar="DAYS",
                        help="drop history older than this (default 0: keep)")
    api = parser.add_argument_group("OpenAI-compatible Images API (/v1; key: RUNNER_API_KEY)")
    api.add_argument("--model-alias", action="append", default=[], metavar="NAME=PRESET",
                     help="answer model NAME with PRESET (or a family's default preset), e.g. gpt-image-1=flux/schnell")
    api.add_argument("--quality-map", action="append", default=[], metavar="FAMILY:QUALITY=PRESET",
                     help="use PRESET for quality QUALITY on FAMILY, e.g. flux:low=flux/schnell")
    api.add_argument("--image-ttl", type=float, default=3600.0, metavar="SECONDS",
                     help="how long url images are served before they are deleted (default 3600)")
    api.add_argument("--base-url", default=None, help="absolute base of url images behind a proxy (default $BASE_URL)")
    api.add_argument("--api-max-queue", type=int, default=0, metavar="N",
                     help="answer Images API requests 429 while N prompts are queued (default 0: no limit)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        listen=args.listen,
        port=args.port,
        output_dir=args.output_dir,
        input_dir=args.input_dir,
        temp_dir=args.temp_dir,
        models_dir=args.models_dir,
        extra_model_paths=list(args.extra_model_paths),
        model_overrides=dict(
            parse_assignment(text, "--model", "PRESET=SOURCE", "sdxl/illustrious=tiny") for text in args.model
        ),
        user_directory=args.user_directory,
        database_url=args.database_url,
        cors_origin=args.enable_cors_header,
        max_upload_size_mb=args.max_upload_size,
        preview_method=args.preview_method,
        front_end_root=args.front_end_root,
        max_history=args.max_history,
        max_history_age_days=args.max_history_age,
        openai=_api_options(args),
    )


def _api_options(args: argparse.Namespace) -> ApiOptions:
    overrides = {"aliases": parse_assignment_map(args.model_alias), "quality_map": parse_quality_map(args.quality_map),
                 "image_ttl_s": args.image_ttl, "max_queue": args.api_max_queue}
    if args.base_url is not None:
        overrides["base_url"] = args.base_url
    return ApiOptions.from_env(**overrides)


def default_tables() -> list[TableFactory]:
    """ComfyUI's API, the model configurations API, the OpenAI-compatible Images API, then the
    frontend (its static root at ``/`` comes last so that it shadows nothing)."""
    return [comfy_routes, lambda context: config_routes(), openai_routes,
            lambda context: frontend_routes(context.settings)]


def build_context(settings: ServerSettings, registry: Optional[dict] = None) -> ServerContext:
    """Configure the host and folders, and build the engine, store, events and service."""
    host = get_host()
    configure_host(host, settings.models_dir, settings.extra_model_paths, settings.model_overrides)
    core_nodes.set_directories(output=settings.output_dir, input=settings.input_dir, temp=settings.temp_dir)
    for folder in (settings.output_dir, settings.input_dir, settings.temp_dir, settings.user_directory):
        Path(folder).mkdir(parents=True, exist_ok=True)
    engine = Engine(registry if registry is not None else core_nodes.node_registry(), host)
    store = SQLiteStore(settings.database_path, settings.max_history, settings.max_history_age_days * 86400)
    hub = EventHub({"supports_preview_metadata": True, "max_upload_size": int(settings.max_upload_size_mb * 1024 * 1024)})
    service = PromptService(engine, store, hub, settings.preview_method)
    hub.on_connect = service.on_connect
    return ServerContext(settings, engine, store, hub, service)


class Server:
    """A running server: ``start()`` on a loop, ``stop()`` for a graceful end."""

    def __init__(self, context: ServerContext, tables: Sequence[TableFactory]) -> None:
        self.context = context
        self.app = create_app(context, [factory(context) for factory in tables])
        self.runner: Optional[web.AppRunner] = None
        self.port: Optional[int] = None

    async def start(self) -> None:
        settings = self.context.settings
        self.context.hub.bind(asyncio.get_running_loop())
        self.context.service.start()
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.listen, settings.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop taking prompts, interrupt the running one, close sockets, flush the database."""
        service = self.context.service
        service.accepting = False
        await asyncio.get_running_loop().run_in_executor(None, service.stop)
        await self.context.hub.close_all()
        if self.runner is not None:
            await self.runner.cleanup()
        self.context.store.close()


async def _serve(server: Server) -> None:
    await server.start()
    settings = server.context.settings
    print(f"Serving ComfyUI's API on http://{settings.listen}:{server.port} (Ctrl-C stops)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    running = server.context.service.current is not None
    print("Stopping: " + ("the running prompt is interrupted; " if running else "") + "pending prompts stay queued.",
          file=sys.stderr, flush=True)
    await server.stop()


def serve_command(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..cli import configure_logging

    configure_logging(max(args.verbose, 1))
    try:
        settings = settings_from_args(args)
        context = build_context(settings)
    except (PresetsError, ValueError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(Server(context, default_tables())))
    except OSError as ex:  # the port is taken, the address is wrong
        print(f"error: cannot listen on {settings.listen}:{settings.port}: {ex.strerror or ex}", file=sys.stderr)
        return 1
    return 0


class ThreadedServer:
    """A server on its own event loop thread (tests and benchmarks)."""

    def __init__(self, settings: ServerSettings, registry: Optional[dict] = None,
                 tables: Optional[Sequence[TableFactory]] = None) -> None:
        self.server = Server(build_context(settings, registry), tables if tables is not None else default_tables())
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-loop", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def context(self) -> ServerContext:
        return self.server.context

    def start(self) -> "ThreadedServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the server did not start")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
