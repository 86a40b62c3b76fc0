"""The prompt service: validation, the durable queue, the one worker thread and its events.

Routes (and later APIs, e.g. an OpenAI-style endpoint) use :class:`PromptService` only:
``await service.submit(...)`` validates and queues, ``await service.wait(prompt_id)`` returns
the history record when the prompt has finished. Generation runs on the worker thread; its
events cross to the event loop with ``call_soon_threadsafe`` (:meth:`EventHub.send_sync`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ...core.errors import PresetsError
from ..engine import Engine, PromptResult, ValidationResult
from ..engine import events as ev
from ..workflow_shape import check_api_prompt
from ...core.previews import latent_to_image
from . import previews
from .events import EventHub
from .store import DuplicatePrompt, HistoryRecord, PromptStore, QueueItem, failed_entry

log = logging.getLogger(__name__)

# Delivered even when the prompt has no client_id (ComfyUI sends these with sid=None, which
# broadcasts); the others then go nowhere.
_BROADCAST_WITHOUT_CLIENT = frozenset({ev.EXECUTING, ev.PROGRESS, "progress_state", ev.EXECUTION_INTERRUPTED})


@dataclass
class Submitted:
    """The outcome of :meth:`PromptService.submit`: ComfyUI's response body and HTTP status."""

    status: int
    body: dict
    item: Optional[QueueItem] = None


def _error(kind: str, message: str, details: str = "") -> dict:
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}}


def history_entry(item: QueueItem, result: PromptResult) -> dict:
    """ComfyUI's history entry for a finished prompt."""
    return {
        "prompt": item.as_comfy(),
        "outputs": result.outputs,
        "status": {
            "status_str": "success" if result.success else "error",
            "completed": result.success,
            "messages": [[event, data] for event, data in result.messages],
        },
        "meta": result.meta,
    }


class PromptService:
    def __init__(self, engine: Engine, store: PromptStore, hub: EventHub, preview_method: str = "auto") -> None:
        self.engine = engine
        self.preview_method = preview_method
        self._preview_throttle = previews.Throttle()
        self.store = store
        self.hub = hub
        self.accepting = True
        self._number = store.max_number()
        self._number_lock = threading.Lock()
        # Validations done at POST time, reused by the worker (re-done after a restart).
        self._validated: dict[str, ValidationResult] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._free_requested: dict[str, bool] = {}
        self.current: Optional[QueueItem] = None
        self.current_node: Optional[str] = None
        # (prompt_id, latent (C, H, W), family) for every sampling step, unthrottled, on the
        # worker thread: the Images API's streamed partial images.
        self.preview_listeners: list[Callable[[str, Any, str], None]] = []
        self.thread = threading.Thread(target=self._work, name="prompt-worker", daemon=True)

    # --- for routes (event loop) ----------------------------------------------------------------------
    def start(self) -> None:
        for prompt_id in self.store.recover():
            log.warning("prompt %s was running when the server stopped; it is queued again", prompt_id)
        self.thread.start()

    def queue_remaining(self) -> int:
        return self.store.pending_count() + (1 if self.current is not None else 0)

    def status_payload(self) -> dict:
        return {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}

    def broadcast_status(self) -> None:
        self.hub.send("status", self.status_payload())

    def on_connect(self, sid: str) -> list[tuple[str, dict]]:
        messages = [("status", {**self.status_payload(), "sid": sid})]
        current, node = self.current, self.current_node
        if current is not None and node is not None and current.client_id == sid:
            messages.append(("executing", {"node": node, "display_node": node, "prompt_id": current.prompt_id}))
        return messages

    async def validate(self, prompt: Any, targets: Optional[list[str]] = None) -> ValidationResult:
        # On the loop, as ComfyUI does: a thread hop cost more than validating a prompt, and the
        # folder listings INPUT_TYPES asks for are cached on the folders' mtimes.
        return self.engine.validate(prompt, targets)

    def _next_number(self, front: bool) -> float:
        with self._number_lock:
            self._number += 1
            return -self._number if front else self._number

    async def submit(
        self,
        prompt: Any,
        extra_data: Optional[dict] = None,
        client_id: Optional[str] = None,
        front: bool = False,
        number: Optional[float] = None,
        prompt_id: Optional[str] = None,
        targets: Optional[list[str]] = None,
    ) -> Submitted:
        """Validate ``prompt`` and queue it; the result is what ``POST /prompt`` answers."""
        if not self.accepting:
            return Submitted(503, _error("server_shutting_down", "The server is shutting down", "Queue the prompt again after it restarts."))
        prompt_id = prompt_id or str(uuid.uuid4())
        duplicate = Submitted(400, _error("prompt_id_exists", "Prompt id already used",
                                          f"A prompt with id {prompt_id} is already queued or in history."))
        if self.store.contains(prompt_id):
            return duplicate
        try:
            check_api_prompt(prompt)
        except PresetsError as ex:
            return Submitted(400, _error("invalid_prompt", "Invalid prompt", ex.message))
        validation = await self.validate(prompt, targets)
        if not validation.ok:
            return Submitted(400, validation.to_response())
        extra = dict(extra_data or {})
        if client_id:
            extra["client_id"] = client_id
        item = QueueItem(
            number=self._next_number(front) if number is None else float(number),
            prompt_id=prompt_id,
            prompt=prompt,
            extra_data=extra,
            outputs_to_execute=list(validation.outputs),
        )
        if prompt_id in self._validated:  # the same id submitted twice at once
            return duplicate
        self._validated[prompt_id] = validation  # before put: the worker may claim it at once
        try:
            self.store.put(item)
        except DuplicatePrompt:
            del self._validated[prompt_id]
            return duplicate
        with self._wake:
            self._wake.notify()
        self.broadcast_status()
        number_out = int(item.number) if float(item.number).is_integer() else item.number
        return Submitted(200, {"prompt_id": prompt_id, "number": number_out, "node_errors": validation.node_errors}, item)

    async def wait(self, prompt_id: str, timeout: Optional[float] = None) -> HistoryRecord:
        """The history record of ``prompt_id`` once it has finished."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(prompt_id, []).append(future)
        record = self.store.history_get(prompt_id)
        if record is not None:
            self._resolve(prompt_id, record)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiters.get(prompt_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[prompt_id]

    def _resolve(self, prompt_id: str, record: HistoryRecord) -> None:
        for future in self._waiters.pop(prompt_id, []):
            if not future.done():
                future.set_result(record)

    def delete_pending(self, prompt_ids: list[str]) -> int:
        count = self.store.delete_pending(prompt_ids)
        for prompt_id in prompt_ids:
            self._validated.pop(prompt_id, None)
        if count:
            self.broadcast_status()
        return count

    def clear_pending(self) -> int:
        count = self.store.clear_pending()
        self._validated.clear()
        self.broadcast_status()
        return count

    def interrupt(self, prompt_id: Optional[str] = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id``, when given)."""
        return self.engine.interrupt(prompt_id or None)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        """``POST /free``: done by the worker between prompts, never under a running one."""
        with self._wake:
            if unload_models:
                self._free_requested["unload_models"] = True
            if free_memory:
                self._free_requested["free_memory"] = True
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking prompts, interrupt the running one and wait for the worker."""
        self.accepting = False
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self.interrupt()
        self.thread.join(timeout)

    # --- the worker thread ----------------------------------------------------------------------------
    def _next(self) -> Optional[QueueItem]:
        while True:
            with self._wake:
                if self._stopping:
                    return None
                free, self._free_requested = self._free_requested, {}
                if not free:
                    # Claimed under the lock: a submit's notify cannot fall between the
                    # empty claim and the wait.
                    item = self.store.claim_next()
                    if item is not None:
                        return item
                    self._wake.wait()
                    continue
            self._free(free)  # outside the lock: submits do not wait for gc

    def _free(self, what: dict) -> None:
        if what.get("unload_models"):
            from ...core.cache import pipeline_cache

            count = pipeline_cache().unload()
            log.info("POST /free: unloaded %d pipeline(s)", count)
        if what.get("free_memory"):
            self.engine.free()
            gc.collect()

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            self.current = item
            self.hub.send_sync("status", self.status_payload())
            start_ms = int(time.time() * 1000)
            try:
                entry = self._run(item)
            except Exception as ex:  # noqa: BLE001 - a bug must not stop the queue
                log.exception("prompt %s failed outside the engine", item.prompt_id)
                entry = failed_entry(item, f"The server failed to run this prompt: {ex}", type(ex).__name__)
                self._send(item, ev.EXECUTION_ERROR, entry["status"]["messages"][0][1])
            try:
                self.store.finish(item, entry, start_ms)
            except Exception:  # noqa: BLE001 - the disk is full, say; the queue must go on
                log.exception("could not record the result of prompt %s", item.prompt_id)
            self.current = None
            self.current_node = None
            self.hub.call_soon(self._finished, item, entry, start_ms)

    def _finished(self, item: QueueItem, entry: dict, start_ms: int) -> None:
        self.broadcast_status()
        self._route(item, ev.EXECUTING, {"node": None, "prompt_id": item.prompt_id})
        if item.prompt_id in self._waiters:
            record = self.store.history_get(item.prompt_id)
            if record is not None:
                self._resolve(item.prompt_id, record)

    def _run(self, item: QueueItem) -> dict:
        validation = self._validated.pop(item.prompt_id, None)
        if validation is None:  # queued before a restart
            validation = self.engine.validate(item.prompt, item.outputs_to_execute)
            if not validation.ok:
                message = validation.error["message"] if validation.error else "Invalid prompt"
                details = validation.error.get("details") if validation.error else ""
                entry = failed_entry(item, f"{message}: {details}" if details else message, "validation")
                self._send(item, ev.EXECUTION_ERROR, entry["status"]["messages"][0][1])
                return entry
        previews_on = self.preview_method != "none"
        result = self.engine.run(validation, item.prompt_id, item.extra_data, lambda e, d: self._send(item, e, d),
                                 self.preview if previews_on else None)
        return history_entry(item, result)

    def preview(self, node_id: str, latent: Any, family: str) -> None:
        """A step latent of the running prompt → binary preview frames (worker thread; rate
        limited). The engine calls it once per sampling step."""
        item = self.current
        if item is None:
            return
        for listener in tuple(self.preview_listeners):  # the loop adds and removes listeners meanwhile
            listener(item.prompt_id, latent, family)
        if self.preview_method == "none" or not self._preview_throttle.ready(item.prompt_id):
            return
        jpeg = previews.encode_jpeg(latent_to_image(latent, family))
        metadata = {"node_id": node_id, "prompt_id": item.prompt_id, "display_node_id": node_id,
                    "parent_node_id": None, "real_node_id": node_id}
        self.hub.call_soon(self.hub.send_preview, previews.frame(jpeg, metadata), previews.frame(jpeg), item.client_id)

    def _send(self, item: QueueItem, event: str, data: dict) -> None:
        if event == ev.EXECUTING:
            self.current_node = data.get("node")
        self.hub.call_soon(self._route, item, event, data)

    def _route(self, item: QueueItem, event: str, data: dict) -> None:
        client_id = item.client_id
        if client_id is not None:
            self.hub.send(event, data, client_id)
        elif event in _BROADCAST_WITHOUT_CLIENT:
            self.hub.send(event, data, None)
        else:
            for listener in self.hub.listeners:
                listener(event, data, None)
