"""The headless execution engine: ComfyUI's validation, caching and execution semantics for
V1 node classes, without ComfyUI.

Drive it like this (the CLI and the server both do)::

    engine = Engine(registry)                      # one per process; keeps the cache
    validation = engine.validate(prompt)           # ValidationResult (ComfyUI error shapes)
    if validation.ok:
        result = engine.run(validation, prompt_id, extra_data, on_event)   # PromptResult

``on_event(event, data)`` receives ComfyUI's websocket message types and payloads (see
:mod:`.events`). ``engine.interrupt()`` may be called from another thread.
"""

from .events import EventCallback
from .executor import Engine, PromptResult
from .validation import ValidationResult, comfy_core_node_names, validate_prompt

__all__ = [
    "Engine",
    "EventCallback",
    "PromptResult",
    "ValidationResult",
    "comfy_core_node_names",
    "validate_prompt",
]
