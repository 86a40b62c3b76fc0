"""Reading V1 node classes: input specs, links, type compatibility.

Shared by validation, execution and the UI → API converter so every part of the runner reads
``INPUT_TYPES`` the same way ComfyUI does (contract §1.2–§1.3).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

# Input categories in the order ComfyUI lays out widgets (required first, then optional).
WIDGET_SECTIONS = ("required", "optional")
PRIMITIVE_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


class InputSpec:
    """One declared input: ``(TYPE,)`` or ``(TYPE, {options})``."""

    __slots__ = ("name", "category", "type", "options")

    def __init__(self, name: str, category: str, spec: Any) -> None:
        self.name = name
        self.category = category
        if isinstance(spec, (tuple, list)) and spec:
            self.type = spec[0]
            options = spec[1] if len(spec) > 1 else {}
        else:  # hidden inputs are bare strings ("PROMPT")
            self.type = spec
            options = {}
        self.options: dict = options if isinstance(options, dict) else {}

    @property
    def combo_options(self) -> Optional[list]:
        """The allowed values of a combo input (legacy list form or ``"COMBO"`` + options)."""
        if isinstance(self.type, (list, tuple)):
            return list(self.type)
        if self.type == "COMBO" and isinstance(self.options.get("options"), (list, tuple)):
            return list(self.options["options"])
        return None

    @property
    def lazy(self) -> bool:
        return bool(self.options.get("lazy"))

    def config(self) -> list:
        """``input_config`` as ComfyUI puts it into validation errors: ``[type, options]``."""
        return [self.type, self.options]


class NodeSchema:
    """The parsed ``INPUT_TYPES()`` of one class, computed once per prompt."""

    __slots__ = ("inputs", "order", "hidden")

    def __init__(self, input_types: Mapping[str, Any]) -> None:
        self.inputs: dict[str, InputSpec] = {}
        self.order: list[str] = []  # required then optional: widget order
        self.hidden: dict[str, str] = {}
        for category in (*WIDGET_SECTIONS, "hidden"):
            section = input_types.get(category) or {}
            if not isinstance(section, Mapping):
                continue
            for name, spec in section.items():
                if name in self.inputs:
                    continue
                self.inputs[name] = InputSpec(name, category, spec)
                if category == "hidden":
                    self.hidden[name] = spec if isinstance(spec, str) else str(spec)
                else:
                    self.order.append(name)

    def get(self, name: str) -> Optional[InputSpec]:
        return self.inputs.get(name)

    def declared(self) -> list[InputSpec]:
        return [self.inputs[name] for name in self.order]


def node_schema(class_def: type) -> NodeSchema:
    return NodeSchema(class_def.INPUT_TYPES())


class SchemaCache:
    """``INPUT_TYPES()`` is called once per class per prompt (it may list files)."""

    def __init__(self) -> None:
        self._schemas: dict[type, NodeSchema] = {}

    def __call__(self, class_def: type) -> NodeSchema:
        schema = self._schemas.get(class_def)
        if schema is None:
            schema = self._schemas[class_def] = node_schema(class_def)
        return schema


def is_link(value: Any) -> bool:
    """A link is ``[str node_id, int slot]`` (graph_utils.is_link)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
        and not isinstance(value[1], bool)
    )


def is_output_node(class_def: type) -> bool:
    return getattr(class_def, "OUTPUT_NODE", False) is True


def return_types(class_def: type) -> tuple:
    return tuple(getattr(class_def, "RETURN_TYPES", ()) or ())


def types_match(received: Any, expected: Any) -> bool:
    """Link compatibility: equal, ``*`` on either side, or overlapping ``A,B`` unions."""
    if not received != expected:  # honours __ne__ overrides (AnyType idiom)
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    received_set = {t.strip() for t in received.split(",")}
    expected_set = {t.strip() for t in expected.split(",")}
    if "*" in received_set or "*" in expected_set:
        return True
    return bool(received_set & expected_set)


def display_title(node: Mapping[str, Any], node_id: str) -> str:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return str(title) if title else str(node.get("class_type") or f"#{node_id}")
