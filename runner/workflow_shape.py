"""Shape checks for workflows, run once before conversion or validation.

The converter and the engine read these structures directly; whatever a hand-edited or
corrupted file puts where they expect something else (a list where a link id belongs, a
subgraph id that is an object, ``properties`` that is a list…) is refused here with a
``workflow_invalid`` error naming the node and the field. Only the fields the runner reads are
checked; everything else in a workflow is passed through untouched.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import PresetsError

_FIX = "Export the workflow from ComfyUI again; the file was changed by hand or is damaged."


def _fail(where: str, message: str) -> PresetsError:
    return PresetsError("workflow_invalid", f"{where}: {message}", _FIX)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_slot(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_id(value: Any) -> bool:
    """Node and link ids are numbers (strings in group-node internals and API prompts)."""
    return _is_int(value) or isinstance(value, str)


def _describe(value: Any) -> str:
    if _is_int(value) and value < 0:
        return "a negative number"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _expect(ok: bool, where: str, field: str, wanted: str, value: Any) -> None:
    if not ok:
        raise _fail(where, f"'{field}' must be {wanted}, not {_describe(value)}.")


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


# --- UI format -----------------------------------------------------------------------------------------
def check_ui_workflow(workflow: Any) -> None:
    """Refuse a UI workflow (format 0.4 or 1) whose fields the converter reads have the wrong
    shape. Raises ``PresetsError('workflow_invalid')``."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise _fail("this is not a ComfyUI workflow", "it has no 'nodes' list.")
    _check_graph(workflow, "workflow")
    definitions = workflow.get("definitions")
    _expect(_optional(definitions, dict), "workflow", "definitions", "an object", definitions)
    subgraphs = (definitions or {}).get("subgraphs")
    _expect(_optional(subgraphs, list), "workflow", "definitions.subgraphs", "a list", subgraphs)
    for index, subgraph in enumerate(subgraphs or []):
        _expect(isinstance(subgraph, dict), "workflow", f"definitions.subgraphs[{index}]", "an object", subgraph)
        _expect(isinstance(subgraph.get("id"), str), f"subgraph #{index}", "id", "a string", subgraph.get("id"))
        where = f"subgraph {subgraph.get('name') or subgraph['id']!r}"
        _expect(isinstance(subgraph.get("nodes"), list), where, "nodes", "a list", subgraph.get("nodes"))
        _check_graph(subgraph, where)
        for side in ("inputs", "outputs"):
            slots = subgraph.get(side)
            _expect(_optional(slots, list), where, side, "a list", slots)
            for n, slot in enumerate(slots or []):
                _expect(isinstance(slot, dict), where, f"{side}[{n}]", "an object", slot)
                _expect(_optional(slot.get("name"), str), where, f"{side}[{n}].name", "a string", slot.get("name"))
                link_ids = slot.get("linkIds")
                _expect(_optional(link_ids, list), where, f"{side}[{n}].linkIds", "a list of link ids", link_ids)
                for link_id in link_ids or []:
                    _expect(_is_id(link_id), where, f"{side}[{n}].linkIds", "a list of link ids", link_id)
    extra = workflow.get("extra")
    _expect(_optional(extra, dict), "workflow", "extra", "an object", extra)
    groups = (extra or {}).get("groupNodes")
    _expect(_optional(groups, dict), "workflow", "extra.groupNodes", "an object", groups)
    for name, group in (groups or {}).items():
        _check_group_node(name, group)


def _check_graph(graph: dict, where: str) -> None:
    links = graph.get("links")
    _expect(_optional(links, list), where, "links", "a list", links)
    for entry in links or []:
        _check_link(entry, where)
    for raw in graph["nodes"]:
        _check_node(raw, where)


def _check_link(entry: Any, where: str) -> None:
    if entry is None:
        return
    if isinstance(entry, list):
        if len(entry) < 5:
            raise _fail(where, f"link {entry!r:.80} has fewer than 5 fields (id, origin, origin slot, target, target slot).")
        link_id, origin, origin_slot, target, target_slot = entry[:5]
    elif isinstance(entry, dict):
        link_id, origin, origin_slot = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot")
        target, target_slot = entry.get("target_id"), entry.get("target_slot")
    else:
        raise _fail(where, f"a link must be a list or an object, not {_describe(entry)}.")
    _expect(_is_id(link_id), where, "links[].id", "a number", link_id)
    here = f"{where}, link {link_id}"
    _expect(_is_id(origin), here, "origin id", "a node id", origin)
    _expect(_is_slot(origin_slot), here, "origin slot", "a slot index (an integer ≥ 0)", origin_slot)
    _expect(target is None or _is_id(target), here, "target id", "a node id", target)
    _expect(target_slot is None or _is_slot(target_slot), here, "target slot", "a slot index (an integer ≥ 0)", target_slot)


def _check_node(raw: Any, where: str) -> None:
    if not isinstance(raw, dict) or not _is_id(raw.get("id")):
        raise _fail(where, f"malformed node {str(raw)[:80]!r}: every node needs an 'id' (a number) and a 'type'.")
    here = f"{where}, node {raw['id']}" if where != "workflow" else f"node {raw['id']}"
    _expect(isinstance(raw.get("type"), str), here, "type", "a string", raw.get("type"))
    _expect(raw.get("mode") is None or _is_int(raw.get("mode")), here, "mode", "an integer", raw.get("mode"))
    properties = raw.get("properties")
    _expect(_optional(properties, dict), here, "properties", "an object", properties)
    values = raw.get("widgets_values")
    if raw["type"] in ("SetNode", "GetNode"):
        _expect(_optional(values, list), here, "widgets_values", "a list", values)
    else:
        _expect(values is None or isinstance(values, (list, dict)), here, "widgets_values", "a list or an object", values)
    inputs = raw.get("inputs")
    _expect(_optional(inputs, list), here, "inputs", "a list", inputs)
    for n, entry in enumerate(inputs or []):
        _expect(isinstance(entry, dict), here, f"inputs[{n}]", "an object", entry)
        _expect(_optional(entry.get("name"), str), here, f"inputs[{n}].name", "a string", entry.get("name"))
        link = entry.get("link")
        _expect(link is None or _is_id(link), here, f"inputs[{n}].link", "a link id (a number) or null", link)
        _expect(_optional(entry.get("widget"), dict), here, f"inputs[{n}].widget", "an object", entry.get("widget"))
    outputs = raw.get("outputs")
    _expect(_optional(outputs, list), here, "outputs", "a list", outputs)
    for n, entry in enumerate(outputs or []):
        _expect(isinstance(entry, dict), here, f"outputs[{n}]", "an object", entry)


def _check_group_node(name: str, group: Any) -> None:
    where = f"group node {name!r}"
    _expect(isinstance(group, dict), "workflow", f"extra.groupNodes[{name!r}]", "an object", group)
    nodes = group.get("nodes")
    _expect(_optional(nodes, list), where, "nodes", "a list", nodes)
    for n, raw in enumerate(nodes or []):
        _expect(isinstance(raw, dict), where, f"nodes[{n}]", "an object", raw)
        index = raw.get("index", n)
        _expect(_is_int(index), where, f"nodes[{n}].index", "an integer", index)
        _check_node({**raw, "id": index}, where)
    links = group.get("links")
    _expect(_optional(links, list), where, "links", "a list", links)
    for entry in links or []:
        ok = isinstance(entry, list) and len(entry) >= 4 and all(_is_slot(v) for v in entry[:4])
        _expect(ok, where, "links[]", "a list [origin, origin slot, target, target slot, …] of integers ≥ 0", entry)


# --- API format ------------------------------------------------------------------------------------------
def check_api_prompt(prompt: Any) -> None:
    """Refuse an API prompt whose nodes are not ``{"class_type": str, "inputs": {...}}``."""
    if not isinstance(prompt, dict):
        raise _fail("prompt", f"must be an object of nodes, not {_describe(prompt)}.")
    for node_id, node in prompt.items():
        here = f"node {node_id}"
        _expect(isinstance(node, dict), here, "node", "an object", node)
        _expect(isinstance(node.get("class_type"), str), here, "class_type", "a string", node.get("class_type"))
        _expect(_optional(node.get("inputs"), dict), here, "inputs", "an object", node.get("inputs"))
        _expect(_optional(node.get("_meta"), dict), here, "_meta", "an object", node.get("_meta"))
