"""Comparing the converter with what ComfyUI's frontend produced (tests/data/golden-conversion)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from diffusers_presets.runner.convert import convert_workflow
from diffusers_presets.runner.engine.schema import node_schema

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden-conversion"
GOLDEN_FILES = sorted(p for p in GOLDEN_DIR.glob("*.json") if not p.name.startswith("_"))


def _node_class(name: str, entry: dict) -> type:
    """A V1 node class with the schema /object_info described."""
    inputs = entry["input"]
    return type(name, (), {
        "INPUT_TYPES": classmethod(lambda cls: inputs),
        "RETURN_TYPES": tuple(entry.get("output") or ()),
        "OUTPUT_NODE": bool(entry.get("output_node")),
        "FUNCTION": "run",
    })


@lru_cache(maxsize=1)
def golden_registry() -> dict[str, type]:
    info = json.loads((GOLDEN_DIR / "_object_info.json").read_text(encoding="utf-8"))
    return {name: _node_class(name, entry) for name, entry in info.items()}


def differences(expected: dict, actual: dict, registry: dict[str, type]) -> list[str]:
    """How ``actual`` (our prompt) differs from the frontend's ``expected``: node ids, class
    types, and each declared input's value or link. Empty when they agree."""
    found = []
    if set(expected) != set(actual):
        found.append(f"node ids: missing {sorted(set(expected) - set(actual))}, extra {sorted(set(actual) - set(expected))}")
    for node_id in sorted(set(expected) & set(actual)):
        want, got = expected[node_id], actual[node_id]
        if want.get("class_type") != got.get("class_type"):
            found.append(f"node {node_id}: class_type {want.get('class_type')!r}, ours {got.get('class_type')!r}")
            continue
        class_def = registry.get(want["class_type"])
        declared = set(node_schema(class_def).inputs) if class_def is not None else set(want["inputs"])
        for name in sorted(declared & (set(want["inputs"]) | set(got["inputs"]))):
            a, b = want["inputs"].get(name, "<absent>"), got["inputs"].get(name, "<absent>")
            if a != b or isinstance(a, bool) != isinstance(b, bool):  # 1 == True in Python, not in JSON
                found.append(f"node {node_id} {want['class_type']}.{name}: frontend {_short(a)}, ours {_short(b)}")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def golden_differences(golden: Path, workflow: dict) -> list[str]:
    registry = golden_registry()
    expected = json.loads(golden.read_text(encoding="utf-8"))
    return differences(expected, convert_workflow(workflow, registry), registry)
