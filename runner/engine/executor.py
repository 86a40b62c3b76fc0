"""Running a validated prompt with ComfyUI's execution semantics (contract §3).

The engine is a library: the CLI and the server create one :class:`Engine` per process (its
cache and node instances persist across prompts), call :meth:`Engine.validate` and then
:meth:`Engine.run` from **one worker thread** (the output cache and node instances are not
shared between threads), and receive events through a callback on that thread. Progress and
interrupts are scoped to the run (``core.host.RunContext``); :meth:`Engine.interrupt` may be
called from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Optional

from ...core.errors import Interrupted, PresetsError
from ...core.host import HeadlessHost, RunContext, get_host, run_scope
from . import events as ev
from .cache import CacheSet, compute_signatures
from .calls import map_over_list, merge_results, merge_ui
from .schedule import DependencyCycleError, Schedule
from .schema import NodeSchema, is_link
from .validation import ValidationResult, validate_prompt

log = logging.getLogger(__name__)

# Marks the log record of a node failure, for callers that print the failure themselves.
NODE_FAILURE = "diffusers_presets_node_failure"

# (node id, latent (C, H, W), family name) -> None: live previews.
PreviewCallback = Callable[[str, Any, str], None]

# ``check_lazy_status`` asked for inputs that are not computed yet: run the node later.
_PENDING = object()


@dataclass
class PromptResult:
    """What one prompt produced; the server turns it into a history entry."""

    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, dict] = field(default_factory=dict)  # node id -> merged ui dict
    meta: dict[str, dict] = field(default_factory=dict)  # node id -> {node_id, display_node, ...}
    messages: list[tuple[str, dict]] = field(default_factory=list)  # history status messages
    error: Optional[dict] = None  # the execution_error / execution_interrupted payload
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.status == "success"


class _NodeFailure(Exception):
    def __init__(self, node_id: str, error: BaseException, inputs: Optional[dict]) -> None:
        super().__init__(str(error))
        self.node_id = node_id
        self.error = error
        self.inputs = inputs


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


def _inference_mode() -> contextlib.AbstractContextManager:
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


class Engine:
    """Validates and runs API prompts against a node registry (class_type → V1 class)."""

    def __init__(self, registry: Mapping[str, type], host: Optional[HeadlessHost] = None) -> None:
        self.registry = registry
        self.host = host if host is not None else get_host()
        self.caches = CacheSet()
        self._active: dict[str, RunContext] = {}  # prompt id -> its run, while it runs
        self._active_lock = threading.Lock()

    def validate(self, prompt: Any, targets: Optional[list[str]] = None) -> ValidationResult:
        return validate_prompt(prompt, self.registry, targets)

    def run(
        self,
        validation: ValidationResult,
        prompt_id: Optional[str] = None,
        extra_data: Optional[Mapping[str, Any]] = None,
        on_event: Optional[ev.EventCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
    ) -> PromptResult:
        """Run the outputs of a successful validation. Events go to ``on_event``; step latents
        of sampling nodes to ``on_preview(node_id, latent (C, H, W), family)`` when given."""
        if not validation.ok:
            raise ValueError("run() needs a prompt that passed validation")
        prompt_id = prompt_id or str(uuid.uuid4())
        run = _Run(self, validation, prompt_id, dict(extra_data or {}), on_event, on_preview)
        with self._active_lock:
            self._active[prompt_id] = run.context
        try:
            with run_scope(run.context):
                return run.execute()
        finally:
            with self._active_lock:
                self._active.pop(prompt_id, None)

    def interrupt(self, prompt_id: Optional[str] = None) -> bool:
        """Stop the running prompt (only ``prompt_id`` if given) at the next node or sampling
        step. Thread-safe; False when no such prompt is running."""
        with self._active_lock:
            runs = [ctx for pid, ctx in self._active.items() if prompt_id is None or pid == prompt_id]
        for ctx in runs:
            ctx.request_interrupt()
        return bool(runs)

    def free(self) -> None:
        """Drop cached outputs and node instances (``POST /free``)."""
        self.caches.clear()


class _Run:
    def __init__(
        self,
        engine: Engine,
        validation: ValidationResult,
        prompt_id: str,
        extra_data: dict,
        on_event: Optional[ev.EventCallback],
        on_preview: Optional[PreviewCallback] = None,
    ) -> None:
        self.engine = engine
        self.registry = engine.registry
        self.caches = engine.caches
        self.prompt = validation.prompt
        self.outputs = validation.outputs
        self.schemas = validation.schemas
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.on_event = on_event
        self.result = PromptResult(prompt_id, "success")
        self.keys: dict[str, Hashable] = {}
        self.current_node: Optional[str] = None
        self.on_preview = on_preview
        self.context = RunContext(self.on_progress, self.preview if on_preview is not None else None)

    # --- events --------------------------------------------------------------------------------
    def emit(self, event: str, data: dict) -> None:
        if event in ev.HISTORY_EVENTS:
            data = {**data, "timestamp": int(time.time() * 1000)}
            self.result.messages.append((event, data))
        if self.on_event is not None:
            self.on_event(event, data)

    def on_progress(self, value: int, total: int) -> None:
        if self.current_node is not None:
            self.emit(ev.PROGRESS, {"value": value, "max": total, "prompt_id": self.prompt_id, "node": self.current_node})

    def preview(self, latent: Any, family: str) -> None:
        if self.current_node is not None and self.on_preview is not None:
            self.on_preview(self.current_node, latent, family)

    # --- inputs ----------------------------------------------------------------------------------
    def schema(self, node_id: str) -> NodeSchema:
        return self.schemas(self.registry[self.prompt[node_id]["class_type"]])

    def cached_outputs(self, node_id: str) -> Optional[list[list]]:
        return self.caches.outputs.get(self.keys.get(node_id))

    def input_data(self, node_id: str, resolve_links: bool) -> tuple[dict[str, list], set[str]]:
        """Inputs as lists (one element per call), the hidden ones included; the names of
        linked inputs whose value is not computed yet (``None``)."""
        schema = self.schema(node_id)
        data: dict[str, list] = {}
        missing: set[str] = set()
        for name, value in self.prompt[node_id]["inputs"].items():
            spec = schema.get(name)
            if is_link(value) and not (spec is not None and spec.options.get("rawLink")):
                outputs = self.cached_outputs(value[0]) if resolve_links else None
                if outputs is None or int(value[1]) >= len(outputs):
                    data[name] = [None]
                    missing.add(name)
                else:
                    data[name] = outputs[int(value[1])]
            elif spec is not None:
                data[name] = [value]
        for name, kind in schema.hidden.items():
            data[name] = [self.hidden_value(kind, node_id, resolve_links)]
        return data, missing

    def hidden_value(self, kind: str, node_id: str, at_run_time: bool) -> Any:
        if kind == "PROMPT":
            return self.prompt if at_run_time else {}
        if kind == "EXTRA_PNGINFO":
            return self.extra_data.get("extra_pnginfo")
        if kind == "UNIQUE_ID":
            return node_id
        if kind == "AUTH_TOKEN_COMFY_ORG":
            return self.extra_data.get("auth_token_comfy_org")
        if kind == "API_KEY_COMFY_ORG":
            return self.extra_data.get("api_key_comfy_org")
        return None

    def is_changed(self, node_id: str) -> Any:
        class_def = self.registry[self.prompt[node_id]["class_type"]]
        func = getattr(class_def, "IS_CHANGED", None)
        if func is None:
            return False
        data, _ = self.input_data(node_id, resolve_links=False)
        return map_over_list(func, data, getattr(class_def, "INPUT_IS_LIST", False))

    # --- the prompt ---------------------------------------------------------------------------------
    def execute(self) -> PromptResult:
        self.emit(ev.EXECUTION_START, {"prompt_id": self.prompt_id})
        self.keys = compute_signatures(self.prompt, self.registry, self.schemas, self.is_changed)
        self.caches.start_prompt(self.prompt, self.keys)
        self.result.cached = [n for n in self.prompt if self.keys[n] in self.caches.outputs]
        self.emit(ev.EXECUTION_CACHED, {"nodes": list(self.result.cached), "prompt_id": self.prompt_id})
        schedule = Schedule(self.prompt, self.registry, self.schemas, lambda n: self.keys.get(n) in self.caches.outputs)
        for output_id in self.outputs:
            schedule.add(output_id)
        try:
            with _inference_mode():
                while not schedule.is_empty():
                    node_id = schedule.next()
                    if self.execute_node(node_id, schedule) is _PENDING:
                        schedule.retry(node_id)
                    else:
                        schedule.complete(node_id)
        except DependencyCycleError as ex:
            self.fail(schedule.cycle_nodes()[0], ex, None, "graph.DependencyCycleError")
        except _NodeFailure as failure:
            if isinstance(failure.error, Interrupted):
                self.interrupted(failure.node_id)
            else:
                self.fail(failure.node_id, failure.error, failure.inputs)
        else:
            self.emit(ev.EXECUTION_SUCCESS, {"prompt_id": self.prompt_id})
        finally:
            self.current_node = None
        self.collect_outputs()
        return self.result

    def execute_node(self, node_id: str, schedule: Schedule) -> Any:
        node = self.prompt[node_id]
        class_def = self.registry[node["class_type"]]
        key = self.keys[node_id]
        if key in self.caches.outputs:  # a cached output node: re-send its UI
            ui = self.caches.ui.get(key)
            if ui is not None:
                self.emit(ev.EXECUTED, self.executed_payload(node_id, ui["output"]))
            return None
        inputs: Optional[dict] = None
        try:
            self.context.throw_if_interrupted()
            inputs, missing = self.input_data(node_id, resolve_links=True)
            self.current_node = node_id
            self.emit(ev.EXECUTING, {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
            obj = self.caches.objects.get((node_id, node["class_type"]))
            if obj is None:
                obj = self.caches.objects[(node_id, node["class_type"])] = class_def()
            input_is_list = getattr(class_def, "INPUT_IS_LIST", False)
            if missing and hasattr(obj, "check_lazy_status"):
                needed = map_over_list(obj.check_lazy_status, inputs, input_is_list)
                names = {n for r in needed if isinstance(r, list) for n in r if isinstance(n, str) and n in missing}
                waits = [schedule.require(node_id, name) for name in sorted(names)]
                if any(waits):
                    return _PENDING
            returns = map_over_list(
                getattr(obj, class_def.FUNCTION), inputs, input_is_list, self.context.throw_if_interrupted
            )
            outputs, ui = self.split_returns(class_def, returns)
        except Exception as ex:  # noqa: BLE001 - a node failure ends the prompt as in ComfyUI
            raise _NodeFailure(node_id, ex, inputs) from ex
        self.caches.outputs[key] = outputs
        if ui:
            self.caches.ui[key] = {"meta": self.meta(node_id), "output": ui}
            self.emit(ev.EXECUTED, self.executed_payload(node_id, ui))
        self.result.executed.append(node_id)
        self.current_node = None
        return None

    @staticmethod
    def split_returns(class_def: type, returns: list) -> tuple[list[list], dict]:
        """Per-call return values → (outputs per slot as lists, merged ui)."""
        slots = len(getattr(class_def, "RETURN_TYPES", ()) or ())
        results = []
        uis = []
        for value in returns:
            if isinstance(value, dict):
                if "expand" in value:
                    raise NotImplementedError(
                        f"{class_def.__name__} returned a node expansion ('expand'), which the "
                        "headless runner does not support; run this workflow in ComfyUI."
                    )
                if "ui" in value:
                    uis.append(value["ui"])
                if "result" in value:
                    results.append(tuple(value["result"]))
            elif value is None:
                results.append(())
            elif isinstance(value, (tuple, list)):
                results.append(tuple(value))
            else:
                raise TypeError(
                    f"{class_def.__name__}.{class_def.FUNCTION} returned {type(value).__name__}; "
                    f"a node must return a tuple with one value per output ({slots})."
                )
        outputs = merge_results(results, getattr(class_def, "OUTPUT_IS_LIST", None)) if results else []
        return outputs, merge_ui(uis)

    def meta(self, node_id: str) -> dict:
        return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}

    def executed_payload(self, node_id: str, ui: dict) -> dict:
        return {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}

    # --- endings ------------------------------------------------------------------------------------
    def base_payload(self, node_id: str) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.result.executed),
        }

    def interrupted(self, node_id: str) -> None:
        log.info("prompt %s interrupted at node %s", self.prompt_id, node_id)
        self.result.status = "interrupted"
        self.emit(ev.EXECUTION_INTERRUPTED, self.base_payload(node_id))
        self.result.error = self.result.messages[-1][1]

    def fail(self, node_id: str, error: BaseException, inputs: Optional[dict], type_name: str = "") -> None:
        log.error("node %s (%s) failed: %s", node_id, self.prompt[node_id]["class_type"], error,
                  extra={NODE_FAILURE: True})
        log.debug("".join(traceback.format_exception(error)))
        payload = self.base_payload(node_id)
        payload.update(
            {
                "exception_message": str(error),
                "exception_type": type_name or _full_type_name(type(error)),
                "traceback": traceback.format_tb(error.__traceback__),
                "current_inputs": {
                    name: [_format_value(v) for v in values] for name, values in (inputs or {}).items()
                },
                "current_outputs": [n for n in self.prompt if self.keys.get(n) in self.caches.outputs],
            }
        )
        if isinstance(error, PresetsError):
            payload["error_code"] = error.code
            payload["fix"] = error.fix
        self.result.status = "error"
        self.emit(ev.EXECUTION_ERROR, payload)
        self.result.error = self.result.messages[-1][1]

    def collect_outputs(self) -> None:
        for node_id in self.prompt:
            entry = self.caches.ui.get(self.keys.get(node_id))
            if entry is not None:
                self.result.outputs[node_id] = entry["output"]
                self.result.meta[node_id] = entry["meta"]
