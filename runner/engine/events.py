"""Engine events: ComfyUI's websocket message types and payloads (contract §4.4, §3.7).

The engine reports through one callable ``on_event(event, data)``. ``data`` is exactly the
``data`` of ComfyUI's ``{"type": event, "data": data}`` websocket message, so a server can
forward it unchanged; the CLI renders it as progress.
"""

from __future__ import annotations

from typing import Callable

EXECUTION_START = "execution_start"  # {prompt_id, timestamp}
EXECUTION_CACHED = "execution_cached"  # {nodes, prompt_id, timestamp}
EXECUTING = "executing"  # {node, display_node, prompt_id}
PROGRESS = "progress"  # {value, max, prompt_id, node}
EXECUTED = "executed"  # {node, display_node, output, prompt_id}
EXECUTION_SUCCESS = "execution_success"  # {prompt_id, timestamp}
EXECUTION_ERROR = "execution_error"  # {prompt_id, node_id, node_type, executed, exception_*, ...}
EXECUTION_INTERRUPTED = "execution_interrupted"  # {prompt_id, node_id, node_type, executed, timestamp}

# Events ComfyUI keeps in a prompt's history ``status.messages``.
HISTORY_EVENTS = frozenset(
    {EXECUTION_START, EXECUTION_CACHED, EXECUTION_SUCCESS, EXECUTION_ERROR, EXECUTION_INTERRUPTED}
)

EventCallback = Callable[[str, dict], None]
