"""Hostile and malformed workflow inputs, shared by test_bad_input.py and bench/fuzz_inputs.py.

Each generator builds the input from scratch (nothing is stored): nesting and digit bombs, a
PNG whose header claims a decompression bomb, subgraph and group-node expansion bombs, and
single-field corruptions of a small UI workflow that has every structure the converter reads.
"""

from __future__ import annotations

import copy
import struct
import zlib
from typing import Any, Callable

SUBGRAPH_ID = "5a5a5a5a-0000-4000-8000-000000000001"


# --- bombs ---------------------------------------------------------------------------------------------
def deep_json(depth: int = 1100) -> str:
    """A JSON list nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


def big_int_prompt(digits: int = 4301) -> str:
    """An API prompt whose value is an integer with more digits than Python will convert."""
    return '{"1": {"class_type": "LoadImage", "inputs": {"image": ' + "9" * digits + "}}}"


def png(width: int = 16, height: int = 16, texts: dict[str, str] | None = None, compressed: bool = False) -> bytes:
    """A PNG with this header and text chunks (tEXt, or zTXt when ``compressed``) and one tiny
    IDAT; the pixels are never valid for a large header, which is the point of a bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    for key, value in (texts or {}).items():
        if compressed:
            out += chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + zlib.compress(value.encode("latin-1")))
        else:
            out += chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    return out + chunk(b"IDAT", zlib.compress(b"\0\0\0")) + chunk(b"IEND", b"")


def nested_choices(depth: int = 1000) -> str:
    """``{a|b}`` dynamic-prompt groups nested ``depth`` deep."""
    return "{" * depth + "a|b" + "}" * depth


def subgraph_bomb(levels: int = 40) -> dict:
    """A UI workflow whose subgraph ``level i`` holds two instances of ``level i+1``: 2**levels
    nodes once expanded, from a few KB."""
    definitions = []
    for i in range(levels):
        if i + 1 < levels:
            inner = [{"id": 1, "type": f"sg{i + 1}"}, {"id": 2, "type": f"sg{i + 1}"}]
        else:
            inner = [{"id": 1, "type": "PreviewImage"}]
        definitions.append({"id": f"sg{i}", "name": f"level {i}", "nodes": inner, "links": []})
    return {"version": 1, "nodes": [{"id": 1, "type": "sg0"}], "links": [], "definitions": {"subgraphs": definitions}}


def group_node_bomb(levels: int = 40) -> dict:
    """The same with legacy group nodes: ``extra.groupNodes['G{i}']`` holds two ``G{i+1}``."""
    groups = {}
    for i in range(levels):
        inner = [{"type": f"workflow>G{i + 1}", "index": n} for n in (0, 1)] if i + 1 < levels else [{"type": "PreviewImage", "index": 0}]
        groups[f"G{i}"] = {"nodes": inner, "links": []}
    return {"nodes": [{"id": 1, "type": "workflow>G0"}], "links": [], "extra": {"groupNodes": groups}, "version": 0.4}


def _ui_node(node_id: int, type_: str, **extra: Any) -> dict:
    return {"id": node_id, "type": type_, "mode": 0, "inputs": [], "outputs": [], "properties": {}, **extra}


# --- a small UI workflow with every structure the converter reads -------------------------------------
def base_workflow() -> dict:
    """LoadImage → (bypassed ImageScale-like pass-through) → SaveImage, a Set/Get pair, a subgraph
    instance and a group node: valid, so that each corruption below is the only fault."""
    subgraph = {
        "id": SUBGRAPH_ID,
        "name": "Preview",
        "inputs": [{"id": "in0", "name": "images", "type": "IMAGE", "linkIds": [20]}],
        "outputs": [],
        "nodes": [_ui_node(1, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 20}])],
        "links": [{"id": 20, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "IMAGE"}],
    }
    group = {
        "nodes": [{"type": "PreviewImage", "index": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": None}], "outputs": []}],
        "links": [],
        "external": [],
    }
    nodes = [
        _ui_node(1, "LoadImage", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1, 4, 5, 6]}],
                 widgets_values=["red.png", "image"]),
        _ui_node(2, "Bypassed", mode=4, inputs=[{"name": "image", "type": "IMAGE", "link": 1}],
                 outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}]),
        _ui_node(3, "SaveImage", inputs=[{"name": "images", "type": "IMAGE", "link": 2}], widgets_values=["bad/img"]),
        _ui_node(4, "SetNode", inputs=[{"name": "IMAGE", "type": "IMAGE", "link": 4}], widgets_values=["picture"]),
        _ui_node(5, "GetNode", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [3]}], widgets_values=["picture"]),
        _ui_node(6, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 3}]),
        _ui_node(7, SUBGRAPH_ID, inputs=[{"name": "images", "type": "IMAGE", "link": 5}]),
        _ui_node(8, "workflow>Group", inputs=[{"name": "images", "type": "IMAGE", "link": 6}]),
    ]
    links = [
        [1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 5, 0, 6, 0, "IMAGE"], [4, 1, 0, 4, 0, "IMAGE"],
        [5, 1, 0, 7, 0, "IMAGE"], [6, 1, 0, 8, 0, "IMAGE"],
    ]
    return {
        "last_node_id": 8, "last_link_id": 6, "nodes": nodes, "links": links, "groups": [], "config": {},
        "extra": {"groupNodes": {"Group": group}}, "definitions": {"subgraphs": [subgraph]}, "version": 0.4,
    }


def _node(wf: dict, node_id: int) -> dict:
    return next(n for n in wf["nodes"] if n["id"] == node_id)


def _set(path: Callable[[dict], tuple[Any, Any]], value: Any) -> Callable[[dict], None]:
    def mutate(wf: dict) -> None:
        container, key = path(wf)
        container[key] = value

    return mutate


def _SG(wf: dict) -> dict:
    return wf["definitions"]["subgraphs"][0]


def _GROUP(wf: dict) -> dict:
    return wf["extra"]["groupNodes"]["Group"]

# (name, mutation, words the error message must contain: the node or structure and the field)
CORRUPTIONS: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("input link is a list", _set(lambda wf: (_node(wf, 3)["inputs"][0], "link"), [2]), ("node 3", "inputs[0].link")),
    ("link id is a list", _set(lambda wf: (wf["links"][1], 0), [2]), ("links[].id",)),
    ("bypassed node linked from slot -100", _set(lambda wf: (wf["links"][1], 2), -100), ("link 2", "origin slot")),
    ("input name is a list", _set(lambda wf: (_node(wf, 3)["inputs"][0], "name"), ["images"]), ("node 3", "inputs[0].name")),
    ("properties is a list", _set(lambda wf: (_node(wf, 3), "properties"), ["Node name for S&R"]), ("node 3", "properties")),
    ("SetNode widgets_values is an object", _set(lambda wf: (_node(wf, 4), "widgets_values"), {"a": 1}), ("node 4", "widgets_values")),
    ("SetNode widgets_values is a number", _set(lambda wf: (_node(wf, 4), "widgets_values"), 7), ("node 4", "widgets_values")),
    ("subgraph id is a list", _set(lambda wf: (_SG(wf), "id"), [SUBGRAPH_ID]), ("subgraph", "id")),
    ("subgraph linkIds is a number", _set(lambda wf: (_SG(wf)["inputs"][0], "linkIds"), 20), ("subgraph 'Preview'", "inputs[0].linkIds")),
    ("subgraph linkIds nested", _set(lambda wf: (_SG(wf)["inputs"][0], "linkIds"), [[20]]), ("subgraph 'Preview'", "inputs[0].linkIds")),
    ("group node nodes is an object", _set(lambda wf: (_GROUP(wf), "nodes"), {"0": {}}), ("group node 'Group'", "nodes")),
    ("group node links is a string", _set(lambda wf: (_GROUP(wf), "links"), "0,0,1,0"), ("group node 'Group'", "links")),
    ("group node inputs is an object", _set(lambda wf: (_GROUP(wf)["nodes"][0], "inputs"), {"images": None}), ("group node 'Group'", "inputs")),
    ("node id is a list", _set(lambda wf: (_node(wf, 6), "id"), [6]), ("malformed node",)),
    ("node type is missing", _set(lambda wf: (_node(wf, 6), "type"), None), ("node 6", "type")),
    ("inputs is an object", _set(lambda wf: (_node(wf, 6), "inputs"), {"images": 3}), ("node 6", "inputs")),
    ("subgraph nodes missing", _set(lambda wf: (_SG(wf), "nodes"), None), ("subgraph 'Preview'", "nodes")),
    ("v0.4 link too short", _set(lambda wf: (wf["links"], 0), [1, 1, 0]), ("fewer than 5 fields",)),
]


def corrupted(name: str) -> dict:
    wf = copy.deepcopy(base_workflow())
    mutate = next(m for n, m, _ in CORRUPTIONS if n == name)
    mutate(wf)
    return wf


# --- malformed API prompts --------------------------------------------------------------------------------
def api_prompts() -> list[tuple[str, dict, tuple[str, ...]]]:
    good = {"1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}}}
    return [
        ("class_type is a list", {"1": {"class_type": ["LoadImage"], "inputs": {}}}, ("node 1", "class_type")),
        ("inputs is a list", {"1": {"class_type": "LoadImage", "inputs": ["red.png"]}}, ("node 1", "inputs")),
        ("_meta is a string", {"1": {**good["1"], "_meta": "title"}}, ("node 1", "_meta")),
    ]
