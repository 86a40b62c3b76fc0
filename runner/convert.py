"""UI workflow → API prompt, driven by the node schemas and the frontend's rules (contract §5).

What ComfyUI's frontend does in ``graphToPrompt`` is reproduced here: widget values are paired
with inputs by the schema's widget layout (required then optional, the hidden
``control_after_generate`` / filter / upload slots), links are followed through Reroutes,
PrimitiveNodes, bypassed nodes and subgraph boundaries, muted and virtual nodes disappear, and
the frontend-only value transforms (``{a|b}`` dynamic prompts, ``%date:…%`` / ``%Node.widget%``
in ``filename_prefix``) are applied. Legacy group nodes (``workflow>Name``) are expanded too.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional

from ..core.errors import PresetsError
from .engine.schema import InputSpec, NodeSchema, node_schema

log = logging.getLogger(__name__)

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote", "GetNode", "SetNode"})
SEED_NAMES = ("seed", "noise_seed")
_MAX_DEPTH = 64

# Widget slots in a node's ``widgets_values``: (kind, input name).
VALUE, CONTROL, FILTER, UPLOAD = "value", "control", "filter", "upload"


def _invalid(message: str, fix: str = "Export the workflow from ComfyUI again.") -> PresetsError:
    return PresetsError("workflow_invalid", message, fix)


# --- widget layout -----------------------------------------------------------------------------------
def has_widget(spec: InputSpec, include_force_input: bool = False) -> bool:
    """Inputs the frontend draws as a widget (forceInput ones are sockets only)."""
    if spec.options.get("forceInput") and not include_force_input:
        return False
    return spec.type in ("INT", "FLOAT", "STRING", "BOOLEAN") or spec.combo_options is not None


def widget_layout(schema: NodeSchema, include_force_input: bool = False) -> list[tuple[str, str]]:
    """The ``widgets_values`` slots ComfyUI's frontend saves for a node with this schema."""
    layout = []
    for spec in schema.declared():
        if not has_widget(spec, include_force_input):
            continue
        layout.append((VALUE, spec.name))
        control = spec.options.get("control_after_generate")
        if spec.type == "INT":
            if control is None:
                control = spec.name in SEED_NAMES
            if control:
                layout.append((CONTROL, spec.name))
        elif spec.combo_options is not None:
            if control:
                layout += [(CONTROL, spec.name), (FILTER, spec.name)]
            if spec.options.get("image_upload"):
                layout.append((UPLOAD, spec.name))
    return layout


def default_widget_value(spec: InputSpec) -> Any:
    if "default" in spec.options:
        return spec.options["default"]
    combo = spec.combo_options
    if combo is not None:
        return combo[0] if combo else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec.type)


def widget_values_by_name(values: Any, schema: NodeSchema) -> dict[str, Any]:
    """Pair a node's saved ``widgets_values`` (list or object form) with its input names;
    missing values fall back to the schema default."""
    result: dict[str, Any] = {}
    if isinstance(values, dict):
        result = {name: value for name, value in values.items() if schema.get(name) is not None}
    elif isinstance(values, list):
        layout = widget_layout(schema)
        with_forced = widget_layout(schema, include_force_input=True)
        if len(values) != len(layout) and len(values) == len(with_forced):
            layout = with_forced  # saved before frontend 1.16: forceInput inputs kept a slot
        index = 0
        consumed_control = False
        for kind, name in layout:
            if index >= len(values):
                break
            value = values[index]
            if kind == VALUE:
                if not schema.inputs[name].options.get("forceInput"):
                    result[name] = value
                index += 1
            elif kind == CONTROL:
                # older frontends saved the control as a boolean
                consumed_control = isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)
                index += consumed_control
            elif kind == FILTER:
                index += consumed_control and isinstance(value, str)
            else:
                index += 1
    for spec in schema.declared():
        if spec.name not in result and has_widget(spec):
            result[spec.name] = default_widget_value(spec)
    return result


# --- frontend value transforms --------------------------------------------------------------------------
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")
_DATE_TOKENS = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def resolve_dynamic_prompt(text: str, rng: random.Random) -> str:
    """``{a|b|{c|d}}`` → one option at random (nested groups too); C comments are removed and
    ``\\{``, ``\\}``, ``\\|`` are literal characters."""
    source = _COMMENTS.sub("", text)
    out, _ = _dynamic_sequence(source, 0, rng, top=True)
    return re.sub(r"\\([{}|])", r"\1", out)


def _dynamic_sequence(text: str, i: int, rng: random.Random, top: bool) -> tuple[str, int]:
    out = []
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\\" and i <= len(text):
            out.append("\\" + text[i : i + 1])
            i += 1
        elif char == "{":
            options, i = _choice_block(text, i)
            chosen = rng.choice(options)
            out.append(_dynamic_sequence(chosen, 0, rng, top=False)[0])
        else:
            out.append(char)
    return "".join(out), i


def _choice_block(text: str, i: int) -> tuple[list[str], int]:
    options, choice, depth = [], [], 0
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\\":
            choice.append("\\" + text[i : i + 1])
            i += 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if not depth:
                break
            depth -= 1
        elif char == "|" and not depth:
            options.append("".join(choice))
            choice = []
            continue
        choice.append(char)
    options.append("".join(choice))
    return options, i


def format_date(fmt: str, now: datetime) -> str:
    def token(match: re.Match) -> str:
        text = match.group(0)
        if text == "yy":
            return str(now.year)[2:]
        if text == "yyyy":
            return str(now.year)
        if text[0] == "y":
            return text
        value = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}[text[0]]
        return str(value).rjust(len(text), "0")

    return _DATE_TOKENS.sub(token, fmt)


# --- the flattened graph ------------------------------------------------------------------------------------
@dataclass
class _Link:
    origin: Any
    origin_slot: int
    target: Any
    target_slot: int
    type: Any


def _parse_links(raw: Any, where: str) -> dict[Any, _Link]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _invalid(f"{where}: 'links' must be a list.")
    links = {}
    for entry in raw:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, origin, origin_slot, target, target_slot = entry[:5]
            kind = entry[5] if len(entry) > 5 else None
        elif isinstance(entry, dict) and "id" in entry:
            link_id = entry["id"]
            origin, origin_slot = entry.get("origin_id"), entry.get("origin_slot")
            target, target_slot, kind = entry.get("target_id"), entry.get("target_slot"), entry.get("type")
        elif entry is None:
            continue
        else:
            raise _invalid(f"{where}: malformed link {entry!r}.")
        if not isinstance(origin_slot, int) or isinstance(origin_slot, bool):
            raise _invalid(f"{where}: link {link_id!r} has a non-integer origin slot {origin_slot!r}.")
        links[link_id] = _Link(origin, origin_slot, target, target_slot if isinstance(target_slot, int) else -1, kind)
    return links


class _Graph:
    """One level of nesting: the root graph, a subgraph instance or a group node."""

    def __init__(self, prefix: str, links: dict, instance: Optional["_Node"], definition: Optional[dict]) -> None:
        self.prefix = prefix
        self.links = links
        self.instance = instance
        self.definition = definition


class _Node:
    def __init__(self, flat_id: str, raw: dict, graph: _Graph) -> None:
        self.id = flat_id
        self.raw = raw
        self.graph = graph
        self.type = raw.get("type")
        self.mode = raw.get("mode", 0)
        self.inner: Optional[_Graph] = None  # set for an expanded subgraph / group node

    @property
    def inputs(self) -> list:
        inputs = self.raw.get("inputs")
        return inputs if isinstance(inputs, list) else []

    @property
    def outputs(self) -> list:
        outputs = self.raw.get("outputs")
        return outputs if isinstance(outputs, list) else []

    def title(self, display_names: Mapping[str, str]) -> str:
        return str(self.raw.get("title") or display_names.get(self.type) or self.type)


def _types_compatible(a: Any, b: Any) -> bool:
    if a == b or a in ("*", "", None) or b in ("*", "", None):
        return True
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return bool({t.strip() for t in a.split(",")} & {t.strip() for t in b.split(",")})


class _Converter:
    def __init__(
        self,
        workflow: dict,
        registry: Mapping[str, type],
        display_names: Mapping[str, str],
        rng: random.Random,
        now: datetime,
    ) -> None:
        self.registry = registry
        self.display_names = display_names
        self.rng = rng
        self.now = now
        self.schemas: dict[type, NodeSchema] = {}
        self.widgets: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, _Node] = {}
        definitions = workflow.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        self.subgraphs = {
            sg["id"]: sg for sg in (subgraphs if isinstance(subgraphs, list) else []) if isinstance(sg, dict) and "id" in sg
        }
        extra = workflow.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.group_nodes = groups if isinstance(groups, dict) else {}
        root = _Graph("", _parse_links(workflow.get("links"), "workflow"), None, None)
        self._add_nodes(workflow.get("nodes"), root, 0)
        self.set_nodes = {
            str((n.raw.get("widgets_values") or [None])[0]): n for n in self.nodes.values() if n.type == "SetNode"
        }

    # --- building ---------------------------------------------------------------------------------------
    def _add_nodes(self, raw_nodes: Any, graph: _Graph, depth: int) -> None:
        if not isinstance(raw_nodes, list):
            raise _invalid("the workflow's 'nodes' must be a list.")
        if depth > _MAX_DEPTH:
            raise _invalid("subgraphs are nested too deeply (a subgraph may contain itself).")
        for raw in raw_nodes:
            if not isinstance(raw, dict) or "id" not in raw:
                raise _invalid(f"malformed node {str(raw)[:80]!r}: every node needs an 'id' and a 'type'.")
            if not isinstance(raw.get("type"), str):
                raise _invalid(f"node {raw['id']!r} has no 'type'.")
            node = _Node(f"{graph.prefix}{raw['id']}", raw, graph)
            self.nodes[node.id] = node
            if node.mode in (MUTED, BYPASSED):
                continue
            definition = self.subgraphs.get(node.type)
            if definition is not None:
                node.inner = _Graph(f"{node.id}:", _parse_links(definition.get("links"), f"subgraph {node.type}"), node, definition)
                self._add_nodes(definition.get("nodes"), node.inner, depth + 1)
            elif node.type.startswith(("workflow>", "workflow/")):
                self._expand_group_node(node, depth)

    def _expand_group_node(self, node: _Node, depth: int) -> None:
        name = node.type.split(">", 1)[-1] if ">" in node.type else node.type.split("/", 1)[-1]
        definition = self.group_nodes.get(name)
        if not isinstance(definition, dict):
            return  # reported by validation as an unknown node type
        inner_raw = []
        values = list(node.raw.get("widgets_values") or [])
        for index, raw in enumerate(definition.get("nodes") or []):
            if not isinstance(raw, dict):
                continue
            copy = {**raw, "id": raw.get("index", index), "inputs": [dict(i) for i in raw.get("inputs") or [] if isinstance(i, dict)]}
            class_def = self.registry.get(raw.get("type"))
            if class_def is not None:  # the group node's widgets are its inner nodes' widgets, in order
                count = len(widget_layout(self._schema(class_def)))
                if len(values) >= count and count:
                    copy["widgets_values"], values = values[:count], values[count:]
            inner_raw.append(copy)
        links = {}
        for n, entry in enumerate(definition.get("links") or []):
            if isinstance(entry, list) and len(entry) >= 4:
                links[("g", n)] = _Link(entry[0], entry[1], entry[2], entry[3], entry[5] if len(entry) > 5 else None)
                target = next((r for r in inner_raw if r["id"] == entry[2]), None)
                if target is not None and 0 <= entry[3] < len(target["inputs"]):
                    target["inputs"][entry[3]]["link"] = ("g", n)
        # The group node's own inputs feed, in order, the inner inputs not linked inside it.
        open_inputs = [(r, i) for r in inner_raw for i, entry in enumerate(r["inputs"]) if entry.get("link") is None]
        for (inner, slot), outer in zip(open_inputs, node.inputs):
            if isinstance(outer, dict) and outer.get("link") is not None:
                inner["inputs"][slot]["link"] = ("outer", outer["link"])
                links[("outer", outer["link"])] = _Link(SUBGRAPH_INPUT, node.inputs.index(outer), None, slot, None)
        node.inner = _Graph(f"{node.id}:", links, node, {"group": definition, "inner": inner_raw})
        self._add_nodes(inner_raw, node.inner, depth + 1)

    def _schema(self, class_def: type) -> NodeSchema:
        schema = self.schemas.get(class_def)
        if schema is None:
            schema = self.schemas[class_def] = node_schema(class_def)
        return schema

    # --- following links --------------------------------------------------------------------------------
    def input_source(self, node: _Node, index: int, depth: int = 0) -> Optional[tuple]:
        """Where ``node.inputs[index]`` gets its value: ``("link", id, slot)``,
        ``("value", v)`` or None."""
        if not 0 <= index < len(node.inputs):
            return None
        entry = node.inputs[index]
        link_id = entry.get("link") if isinstance(entry, dict) else None
        link = node.graph.links.get(link_id) if link_id is not None else None
        if link is None:
            return None
        return self.follow(node.graph, link.origin, link.origin_slot, depth + 1)

    def follow(self, graph: _Graph, origin: Any, slot: int, depth: int) -> Optional[tuple]:
        if depth > _MAX_DEPTH * 4:
            log.warning("link chain too long (a Reroute or bypass loop?); dropping it")
            return None
        if origin in (SUBGRAPH_INPUT, str(SUBGRAPH_INPUT)):
            return self._boundary_input(graph, slot, depth)
        node = self.nodes.get(f"{graph.prefix}{origin}")
        if node is None or node.mode == MUTED:
            return None
        if node.mode == BYPASSED:
            index = self._bypass_input(node, slot)
            return None if index is None else self.input_source(node, index, depth)
        if node.inner is not None:
            return self._inner_output(node, slot, depth)
        if node.type == "Reroute":
            return self.input_source(node, 0, depth)
        if node.type == "PrimitiveNode":
            values = node.raw.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        if node.type == "GetNode":
            name = str((node.raw.get("widgets_values") or [None])[0])
            setter = self.set_nodes.get(name)
            return self.input_source(setter, 0, depth) if setter is not None else None
        if node.type in VIRTUAL_TYPES:
            return None
        return ("link", node.id, slot)

    def _boundary_input(self, graph: _Graph, slot: int, depth: int) -> Optional[tuple]:
        """An inner link from a subgraph's input node: continue outside, on the instance."""
        instance = graph.instance
        if instance is None:
            return None
        definition = graph.definition or {}
        index = slot
        sub_inputs = definition.get("inputs")
        if isinstance(sub_inputs, list) and 0 <= slot < len(sub_inputs) and isinstance(sub_inputs[slot], dict):
            name = sub_inputs[slot].get("name")
            names = [entry.get("name") if isinstance(entry, dict) else None for entry in instance.inputs]
            if name in names:
                index = names.index(name)
        return self.input_source(instance, index, depth)

    def _inner_output(self, node: _Node, slot: int, depth: int) -> Optional[tuple]:
        definition = node.inner.definition or {}
        if "group" in definition:  # legacy group node: outputs are the inner nodes' outputs in order
            outputs = [(r["id"], i) for r in definition["inner"] for i, _ in enumerate(r.get("outputs") or [])]
            if 0 <= slot < len(outputs):
                return self.follow(node.inner, outputs[slot][0], outputs[slot][1], depth + 1)
            return None
        sub_outputs = definition.get("outputs")
        if not isinstance(sub_outputs, list) or not 0 <= slot < len(sub_outputs):
            return None
        link_ids = sub_outputs[slot].get("linkIds") if isinstance(sub_outputs[slot], dict) else None
        for link_id in link_ids or []:
            link = node.inner.links.get(link_id)
            if link is not None:
                return self.follow(node.inner, link.origin, link.origin_slot, depth + 1)
        return None

    def _bypass_input(self, node: _Node, slot: int) -> Optional[int]:
        """The input a bypassed node passes through to output ``slot``: the same slot if its
        type fits, else the first input of exactly that type, else the first compatible one."""
        outputs = node.outputs
        out_type = outputs[slot].get("type") if 0 <= slot < len(outputs) and isinstance(outputs[slot], dict) else None
        inputs = [entry if isinstance(entry, dict) else {} for entry in node.inputs]
        if slot < len(inputs) and _types_compatible(inputs[slot].get("type"), out_type):
            return slot
        for index, entry in enumerate(inputs):
            if entry.get("type") == out_type:
                return index
        for index, entry in enumerate(inputs):
            if _types_compatible(entry.get("type"), out_type):
                return index
        return None

    # --- emitting ---------------------------------------------------------------------------------------
    def is_emitted(self, node: _Node) -> bool:
        return node.mode not in (MUTED, BYPASSED) and node.inner is None and node.type not in VIRTUAL_TYPES

    def widgets_of(self, node: _Node) -> dict[str, Any]:
        if node.id not in self.widgets:
            class_def = self.registry.get(node.type)
            self.widgets[node.id] = (
                widget_values_by_name(node.raw.get("widgets_values"), self._schema(class_def)) if class_def else {}
            )
        return self.widgets[node.id]

    def convert(self) -> dict:
        prompt: dict[str, dict] = {}
        for node in self.nodes.values():
            if not self.is_emitted(node):
                continue
            class_def = self.registry.get(node.type)
            schema = self._schema(class_def) if class_def is not None else None
            inputs: dict[str, Any] = dict(self.widgets_of(node))
            links: dict[str, list] = {}
            for index, entry in enumerate(node.inputs):
                name = entry.get("name") if isinstance(entry, dict) else None
                source = self.input_source(node, index) if name else None
                if source is None:
                    continue
                if source[0] == "link":
                    links[name] = [source[1], source[2]]
                else:
                    inputs[name] = source[1]
            for name, value in inputs.items():
                spec = schema.get(name) if schema is not None else None
                if isinstance(value, str) and spec is not None:
                    inputs[name] = self.transform(spec, value)
                elif isinstance(value, list):
                    inputs[name] = {"__value__": value}
            inputs.update(links)
            prompt[node.id] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": node.title(self.display_names)}}
        for entry in prompt.values():  # links to nodes that are not in the prompt are dropped
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in prompt:
                    del entry["inputs"][name]
        return prompt

    def transform(self, spec: InputSpec, value: str) -> str:
        if spec.type == "STRING" and spec.options.get("dynamicPrompts"):
            value = resolve_dynamic_prompt(value, self.rng)
        if spec.name == "filename_prefix":
            value = re.sub(r"%([^%]+)%", self._replacement, value)
        return value

    def _replacement(self, match: re.Match) -> str:
        text = match.group(1)
        parts = text.split(".")
        if len(parts) != 2:
            return format_date(parts[0][5:], self.now) if parts[0].startswith("date:") else match.group(0)
        node_name, widget = parts
        candidates = [n for n in self.nodes.values() if (n.raw.get("properties") or {}).get("Node name for S&R") == node_name]
        candidates = candidates or [n for n in self.nodes.values() if n.title(self.display_names) == node_name]
        if not candidates:
            return match.group(0)
        widgets = self.widgets_of(candidates[0])
        if widget not in widgets:
            return match.group(0)
        value = widgets[widget]
        return re.sub(r'[/?<>\\:*|"\x00-\x1F\x7F]', "_", "" if value is None else _js_string(value))


def _js_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def convert_workflow(
    workflow: Any,
    registry: Mapping[str, type],
    display_names: Optional[Mapping[str, str]] = None,
    rng: Optional[random.Random] = None,
    now: Optional[datetime] = None,
) -> dict:
    """Convert a UI workflow (format 0.4 or 1) to an API prompt.

    ``registry`` gives the node schemas; nodes of unknown types are still emitted (with their
    links) so that validation can name them. ``rng`` drives ``{a|b}`` choices, ``now`` the
    ``%date:…%`` values.
    """
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise _invalid("this is not a ComfyUI workflow: it has no 'nodes' list.")
    converter = _Converter(workflow, registry, display_names or {}, rng or random.Random(), now or datetime.now())
    return converter.convert()
