"""The Images API inside ComfyUI: the same routes on ComfyUI's own aiohttp server, queued on
ComfyUI's PromptQueue, so its queue, history, progress bar and interrupt see these requests.

The pack's ``__init__`` calls :func:`mount_in_comfyui` only when ComfyUI's ``PromptServer``
exists; the runner never imports this module.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .openai_api import ImagesApi, Outcome, build_routes, outcome_of
from .openai_errors import from_validation
from .openai_params import ApiOptions

log = logging.getLogger(__name__)

# How often a waiting request looks at ComfyUI's history (it has no per-prompt completion hook).
POLL_S = 0.1


class ComfyBackend:
    """ComfyUI's ``PromptServer.instance``: validate as ``POST /prompt`` does, then queue."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def submit(self, prompt: dict, prompt_id: str) -> None:
        import execution  # ComfyUI's

        try:
            result = execution.validate_prompt(prompt_id, prompt, None)
        except TypeError:  # ComfyUI before 0.3.4x: validate_prompt(prompt)
            result = execution.validate_prompt(prompt)
        if inspect.isawaitable(result):
            result = await result
        ok, error, outputs, node_errors = result[:4]
        if not ok:
            raise from_validation({"error": error, "node_errors": node_errors})
        number = self.server.number
        self.server.number += 1
        item: tuple = (number, prompt_id, prompt, {}, outputs)
        if hasattr(execution, "SENSITIVE_EXTRA_DATA_KEYS"):  # newer queues carry a `sensitive` dict
            item += ({},)
        self.server.prompt_queue.put(item)

    async def wait(self, prompt_id: str) -> Outcome:
        queue = self.server.prompt_queue
        while True:
            history = queue.get_history(prompt_id=prompt_id)
            if prompt_id in history:
                return outcome_of(history[prompt_id])
            await asyncio.sleep(POLL_S)

    def cancel(self, prompt_id: str) -> None:
        queue = self.server.prompt_queue
        if not queue.delete_queue_item(lambda item: item[1] == prompt_id):
            running = queue.get_current_queue()[0]
            if any(item[1] == prompt_id for item in running):
                import nodes  # ComfyUI's

                nodes.interrupt_processing()

    def watch_steps(self, prompt_id: str, callback: Callable[[Any, str], None]) -> Callable[[], None]:
        """ComfyUI has no per-prompt hook for step latents: no partial images here."""
        return lambda: None


def mount_in_comfyui() -> bool:
    """Add the ``/v1`` routes to ComfyUI's server (before it starts); False outside ComfyUI."""
    server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if server is None:
        return False
    import folder_paths  # ComfyUI's

    temp = getattr(folder_paths, "get_temp_directory", tempfile.gettempdir)()
    api = ImagesApi(ApiOptions.from_env(), ComfyBackend(server), Path(temp) / "images_api")
    for route in build_routes(api):
        server.routes.route(route.method, route.path)(route.handler)

    async def start(_app: Any) -> None:
        api.files.start()

    server.app.on_startup.append(start)
    log.info("OpenAI-compatible Images API mounted at /v1 on ComfyUI's server")
    return True
