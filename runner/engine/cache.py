"""Output cache keyed by input signature (contract §3.3).

A node's signature is a digest of its class, its IS_CHANGED value, its constant inputs and,
for each link, the *signature of the linked node* and the slot. Signatures are memoised, so
computing them for a whole prompt is linear in its size; node ids only enter a signature for
NOT_IDEMPOTENT nodes and nodes that receive UNIQUE_ID, so identical sub-graphs share results
exactly as in ComfyUI. A node whose key cannot be computed (IS_CHANGED failed or returned NaN,
a value that is not JSON) gets a fresh key that never matches: it always runs, and so does
everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any, Callable, Hashable, Mapping

from .schema import SchemaCache, is_link

log = logging.getLogger(__name__)

# node_id -> IS_CHANGED result (False when the class has none); may raise.
IsChangedFn = Callable[[str], Any]


class _Uncacheable:
    """A key equal only to itself."""

    __slots__ = ()


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False


def compute_signatures(
    prompt: Mapping[str, Mapping[str, Any]],
    registry: Mapping[str, type],
    schemas: SchemaCache,
    is_changed: IsChangedFn,
) -> dict[str, Hashable]:
    """Signature of every node in ``prompt`` (iterative post-order, cycles get fresh keys)."""
    keys: dict[str, Hashable] = {}
    for root in prompt:
        if root in keys:
            continue
        stack = [root]
        visiting = set()
        while stack:
            node_id = stack[-1]
            if node_id in keys:
                stack.pop()
                continue
            inputs = prompt[node_id]["inputs"]
            waiting = [
                v[0] for v in inputs.values() if is_link(v) and v[0] in prompt and v[0] not in keys
            ]
            if waiting and node_id not in visiting:
                visiting.add(node_id)
                stack.extend(p for p in waiting if p not in visiting)
                continue
            stack.pop()
            visiting.discard(node_id)
            keys[node_id] = _signature(node_id, prompt[node_id], registry, schemas, is_changed, keys)
    return keys


def _signature(
    node_id: str,
    node: Mapping[str, Any],
    registry: Mapping[str, type],
    schemas: SchemaCache,
    is_changed: IsChangedFn,
    keys: Mapping[str, Hashable],
) -> Hashable:
    class_type = node["class_type"]
    class_def = registry[class_type]
    try:
        changed = is_changed(node_id)
    except Exception as ex:  # noqa: BLE001 - ComfyUI logs and re-runs the node
        log.warning("IS_CHANGED of node %s (%s) failed, it will run: %s", node_id, class_type, ex)
        return _Uncacheable()
    if _has_nan(changed):
        return _Uncacheable()
    with_id = getattr(class_def, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in schemas(class_def).hidden.values()
    parts: list[Any] = [class_type, changed, node_id if with_id else None]
    inputs = node["inputs"]
    for name in sorted(inputs):
        value = inputs[name]
        if is_link(value):
            parent = keys.get(value[0])
            if not isinstance(parent, bytes):
                return _Uncacheable()
            parts.append([name, "link", parent.hex(), value[1]])
        else:
            parts.append([name, "value", value])
    try:
        text = json.dumps(parts, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return _Uncacheable()
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class CacheSet:
    """Outputs and UI by signature, node instances by ``(node_id, class_type)``.

    Like ComfyUI's classic cache, starting a prompt evicts every entry the new prompt does not
    use, so results survive only while the graph still produces them.
    """

    def __init__(self) -> None:
        self.outputs: dict[Hashable, list[list]] = {}
        self.ui: dict[Hashable, dict] = {}
        self.objects: dict[tuple[str, str], Any] = {}

    def start_prompt(self, prompt: Mapping[str, Mapping[str, Any]], keys: Mapping[str, Hashable]) -> None:
        used = set(keys.values())
        for store in (self.outputs, self.ui):
            for key in [k for k in store if k not in used]:
                del store[key]
        live = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        for key in [k for k in self.objects if k not in live]:
            del self.objects[key]

    def clear(self) -> None:
        self.outputs.clear()
        self.ui.clear()
        self.objects.clear()
