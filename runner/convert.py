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
import os
import random
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional

from ..core.errors import PresetsError
from .engine.schema import InputSpec, NodeSchema, node_schema
from .workflow_shape import check_ui_workflow

log = logging.getLogger(__name__)

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote", "GetNode", "SetNode"})
SEED_NAMES = ("seed", "noise_seed")
_MAX_DEPTH = 64
# Subgraphs and group nodes can nest instances of each other: 40 levels of two instances each
# is 2**40 nodes from a 3 KB file. Expansion stops at this many nodes (env RUNNER_MAX_NODES).
DEFAULT_MAX_NODES = 10_000

# Widget slots in a node's ``widgets_values``: (kind, input name). A remote combo (options
# fetched by the frontend) is followed by an auto-refresh toggle and maybe a refresh button.
VALUE, CONTROL, FILTER, UPLOAD, TOGGLE, REFRESH = "value", "control", "filter", "upload", "toggle", "refresh"


def _invalid(message: str, fix: str = "Export the workflow from ComfyUI again.") -> PresetsError:
    return PresetsError("workflow_invalid", message, fix)


# --- widget layout -----------------------------------------------------------------------------------
def has_widget(spec: InputSpec, include_force_input: bool = False) -> bool:
    """Inputs the frontend draws as a widget (forceInput ones are sockets only)."""
    if spec.options.get("forceInput") and not include_force_input:
        return False
    return spec.type in ("INT", "FLOAT", "STRING", "BOOLEAN") or _is_combo(spec)


def _is_combo(spec: InputSpec) -> bool:
    """A list of options, or ``"COMBO"`` (whose options may be fetched by the frontend: ``remote``)."""
    return spec.combo_options is not None or spec.type == "COMBO"


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
        elif _is_combo(spec):
            remote = spec.options.get("remote")
            if isinstance(remote, dict):
                layout.append((TOGGLE, spec.name))
                if remote.get("refresh_button"):
                    layout.append((REFRESH, spec.name))
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
            elif kind == TOGGLE:  # absent in files saved before the toggle existed
                index += isinstance(value, bool)
            elif kind == REFRESH:
                index += value == "refresh"
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
    ``\\{``, ``\\}``, ``\\|`` are literal characters. Iterative, linear in the text: a
    thousand nested groups are no deeper for Python than one."""
    root = _parse_choices(_COMMENTS.sub("", text))
    out: list[str] = []
    pending = [iter(root)]
    while pending:  # depth first, left to right: the frontend's order of random choices
        part = next(pending[-1], None)
        if part is None:
            pending.pop()
        elif isinstance(part, str):
            out.append(part)
        else:
            pending.append(iter(rng.choice(part)))
    return re.sub(r"\\([{}|])", r"\1", "".join(out))


_CHOICE_TOKENS = re.compile(r"\\.?|[{}|]|[^\\{}|]+", re.S)


def _parse_choices(text: str) -> list:
    """The text as parts: strings and choice groups (a list of options, each a list of parts).
    A group left open at the end closes there; ``|`` and ``}`` outside a group are text."""
    root: list = []
    groups: list[list[list]] = []  # the open groups, innermost last
    current = root
    for match in _CHOICE_TOKENS.finditer(text):
        token = match.group(0)
        if token == "{":
            group: list[list] = [[]]
            current.append(group)
            groups.append(group)
            current = group[-1]
        elif token == "|" and groups:
            groups[-1].append([])
            current = groups[-1][-1]
        elif token == "}" and groups:
            groups.pop()
            current = groups[-1][-1] if groups else root
        else:
            current.append(token)
    return root


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


def _parse_links(raw: Optional[list]) -> dict[Any, _Link]:
    """A graph's links (list or object form, shapes already checked) by id."""
    links = {}
    for entry in raw or []:
        if isinstance(entry, list):
            link_id, origin, origin_slot, target, target_slot = entry[:5]
            kind = entry[5] if len(entry) > 5 else None
        elif entry is not None:
            link_id = entry["id"]
            origin, origin_slot = entry["origin_id"], entry["origin_slot"]
            target, target_slot, kind = entry.get("target_id"), entry.get("target_slot"), entry.get("type")
        else:
            continue
        links[link_id] = _Link(origin, origin_slot, target, -1 if target_slot is None else target_slot, kind)
    return links


class _Graph:
    """One level of nesting: the root graph, a subgraph instance or a group node."""

    def __init__(self, prefix: str, links: dict, instance: Optional["_Node"], definition: Optional[dict]) -> None:
        self.prefix = prefix
        self.links = links
        self.instance = instance
        self.definition = definition

    @property
    def name(self) -> str:
        """How errors name this level."""
        if self.instance is None:
            return "the workflow"
        definition = self.definition or {}
        if "group" in definition:
            return f"group node {self.instance.type!r} (node {self.instance.id})"
        return f"subgraph {definition.get('name') or self.instance.type!r} (node {self.instance.id})"


class _Node:
    def __init__(self, flat_id: str, raw: dict, graph: _Graph) -> None:
        self.id = flat_id
        self.raw = raw
        self.graph = graph
        self.type = raw.get("type")
        self.mode = raw.get("mode", 0)
        self.inner: Optional[_Graph] = None  # set for an expanded subgraph / group node

    @property
    def inputs(self) -> list[dict]:
        return self.raw.get("inputs") or []

    @property
    def outputs(self) -> list[dict]:
        return self.raw.get("outputs") or []

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
        max_nodes: int,
    ) -> None:
        self.registry = registry
        self.display_names = display_names
        self.rng = rng
        self.now = now
        self.max_nodes = max_nodes
        self.schemas: dict[type, NodeSchema] = {}
        self.widgets: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, _Node] = {}
        self.promoted: dict[str, dict[int, int]] = {}  # subgraph id → its widget inputs
        self.by_name: Optional[dict[str, _Node]] = None  # %Name.widget% lookups, built on first use
        # Shapes were checked by check_ui_workflow: from here on the workflow is trusted.
        self.subgraphs = {sg["id"]: sg for sg in (workflow.get("definitions") or {}).get("subgraphs") or []}
        self.group_nodes: dict = (workflow.get("extra") or {}).get("groupNodes") or {}
        root = _Graph("", _parse_links(workflow.get("links")), None, None)
        self._add_nodes(workflow["nodes"], root, 0)
        self.set_nodes = {
            str((n.raw.get("widgets_values") or [None])[0]): n for n in self.nodes.values() if n.type == "SetNode"
        }  # the shape check made SetNode's widgets_values a list

    # --- building ---------------------------------------------------------------------------------------
    def _add_nodes(self, raw_nodes: list[dict], graph: _Graph, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _invalid("subgraphs are nested too deeply (a subgraph may contain itself).")
        for raw in raw_nodes:
            if len(self.nodes) >= self.max_nodes:
                raise _invalid(
                    f"expanding {graph.name} would make more than {self.max_nodes:,} nodes "
                    "(its subgraphs or group nodes hold instances of each other, nested deeply).",
                    "Check the workflow's subgraphs; if it really is this large, raise RUNNER_MAX_NODES.",
                )
            node = _Node(f"{graph.prefix}{raw['id']}", raw, graph)
            self.nodes[node.id] = node
            if node.mode in (MUTED, BYPASSED):
                continue
            definition = self.subgraphs.get(node.type)
            if definition is not None:
                node.inner = _Graph(f"{node.id}:", _parse_links(definition.get("links")), node, definition)
                self._add_nodes(definition.get("nodes"), node.inner, depth + 1)
            elif node.type.startswith(("workflow>", "workflow/")):
                self._expand_group_node(node, depth)

    def _expand_group_node(self, node: _Node, depth: int) -> None:
        name = node.type.split(">", 1)[-1] if ">" in node.type else node.type.split("/", 1)[-1]
        definition = self.group_nodes.get(name)
        if definition is None:
            return  # reported by validation as an unknown node type
        inner_raw = []
        values = list(node.raw.get("widgets_values") or [])
        for index, raw in enumerate(definition.get("nodes") or []):
            copy = {**raw, "id": raw.get("index", index), "inputs": [dict(i) for i in raw.get("inputs") or []]}
            class_def = self.registry.get(raw["type"])
            if class_def is not None:  # the group node's widgets are its inner nodes' widgets, in order
                count = len(widget_layout(self._schema(class_def)))
                if len(values) >= count and count:
                    copy["widgets_values"], values = values[:count], values[count:]
            inner_raw.append(copy)
        links = {}
        for n, entry in enumerate(definition.get("links") or []):
            links[("g", n)] = _Link(entry[0], entry[1], entry[2], entry[3], entry[5] if len(entry) > 5 else None)
            target = next((r for r in inner_raw if r["id"] == entry[2]), None)
            if target is not None and entry[3] < len(target["inputs"]):
                target["inputs"][entry[3]]["link"] = ("g", n)
        # The group node's own inputs feed, in order, the inner inputs not linked inside it.
        open_inputs = [(r, i) for r in inner_raw for i, entry in enumerate(r["inputs"]) if entry.get("link") is None]
        for (inner, slot), outer in zip(open_inputs, node.inputs):
            if outer.get("link") is not None:
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
        link_id = node.inputs[index].get("link")
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
        """An inner link from a subgraph's input node: continue outside, on the instance's input
        of the same name; unlinked there, a widget input takes the instance's widget value."""
        instance = graph.instance
        if instance is None:
            return None
        definition = graph.definition or {}
        if "group" in definition:  # group nodes link their inner inputs to the outer slot index
            return self.input_source(instance, slot, depth)
        sub_inputs = definition.get("inputs") or []
        if not 0 <= slot < len(sub_inputs):
            return None
        name = sub_inputs[slot].get("name")
        for index, entry in enumerate(instance.inputs):
            if entry.get("name") == name:
                if entry.get("link") is not None:
                    return self.input_source(instance, index, depth)
                break
        # Saved instances leave unlinked widget inputs out of 'inputs'; their values are the
        # instance's widgets_values, one per widget input in the subgraph's input order.
        position = self._widget_inputs(definition, 0).get(slot)
        values = instance.raw.get("widgets_values")
        if position is None:
            return None
        if isinstance(values, dict) and name in values:  # saved by name
            return ("value", values[name])
        if isinstance(values, list) and position < len(values):
            return ("value", values[position])
        return None  # the inner node keeps its own widget value

    def _widget_inputs(self, definition: dict, depth: int) -> dict[int, int]:
        """Subgraph input slot → index in an instance's ``widgets_values``, for the inputs the
        frontend shows as widgets: those linked inside to a widget input (of a node, or of a
        nested subgraph instance's own widget input), in input order (``SubgraphNode``)."""
        key = definition["id"]
        if key in self.promoted:
            return self.promoted[key]
        self.promoted[key] = {}  # a subgraph that contains itself has no widgets through itself
        if depth > _MAX_DEPTH:
            return {}
        links = _parse_links(definition.get("links"))
        nodes = {raw["id"]: raw for raw in definition.get("nodes") or []}
        result: dict[int, int] = {}
        for slot, sub_input in enumerate(definition.get("inputs") or []):
            for link_id in sub_input.get("linkIds") or []:
                link = links.get(link_id)
                target = nodes.get(link.target) if link is not None else None
                if target is not None and self._is_widget_input(target, link.target_slot, depth):
                    result[slot] = len(result)
                    break
        self.promoted[key] = result
        return result

    def _is_widget_input(self, raw: dict, slot: int, depth: int) -> bool:
        inputs = raw.get("inputs") or []
        if not 0 <= slot < len(inputs) or not isinstance(inputs[slot].get("widget"), dict):
            return False
        nested = self.subgraphs.get(raw["type"])
        if nested is not None:
            names = [entry.get("name") for entry in nested.get("inputs") or []]
            name = inputs[slot].get("name")
            return name in names and names.index(name) in self._widget_inputs(nested, depth + 1)
        class_def = self.registry.get(raw["type"])
        spec = self._schema(class_def).get(inputs[slot]["widget"].get("name")) if class_def is not None else None
        return spec is not None and has_widget(spec)

    def _inner_output(self, node: _Node, slot: int, depth: int) -> Optional[tuple]:
        definition = node.inner.definition or {}
        if "group" in definition:  # legacy group node: outputs are the inner nodes' outputs in order
            outputs = [(r["id"], i) for r in definition["inner"] for i, _ in enumerate(r.get("outputs") or [])]
            if 0 <= slot < len(outputs):
                return self.follow(node.inner, outputs[slot][0], outputs[slot][1], depth + 1)
            return None
        sub_outputs = definition.get("outputs") or []
        if not 0 <= slot < len(sub_outputs):
            return None
        for link_id in sub_outputs[slot].get("linkIds") or []:
            link = node.inner.links.get(link_id)
            if link is not None:
                return self.follow(node.inner, link.origin, link.origin_slot, depth + 1)
        return None

    def _bypass_input(self, node: _Node, slot: int) -> Optional[int]:
        """The input a bypassed node passes through to output ``slot``: the same slot if its
        type fits, else the first input of exactly that type, else the first compatible one."""
        outputs = node.outputs
        out_type = outputs[slot].get("type") if 0 <= slot < len(outputs) else None
        inputs = node.inputs
        if 0 <= slot < len(inputs) and _types_compatible(inputs[slot].get("type"), out_type):
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
                name = entry.get("name")
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
        if self.by_name is None:  # S&R names win over titles; the first node of a name wins
            titles = {n.title(self.display_names): n for n in reversed(self.nodes.values())}
            names = {}
            for n in reversed(self.nodes.values()):
                name = (n.raw.get("properties") or {}).get("Node name for S&R")
                if isinstance(name, str):
                    names[name] = n
            self.by_name = {**titles, **names}
        candidate = self.by_name.get(node_name)
        if candidate is None:
            return match.group(0)
        widgets = self.widgets_of(candidate)
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
    max_nodes: Optional[int] = None,
) -> dict:
    """Convert a UI workflow (format 0.4 or 1) to an API prompt.

    ``registry`` gives the node schemas; nodes of unknown types are still emitted (with their
    links) so that validation can name them. ``rng`` drives ``{a|b}`` choices, ``now`` the
    ``%date:…%`` values. Expansion of subgraphs and group nodes stops with ``workflow_invalid``
    beyond ``max_nodes`` nodes (default: env ``RUNNER_MAX_NODES``, else 10,000). Malformed
    files raise ``workflow_invalid`` naming the node and the field.
    """
    check_ui_workflow(workflow)
    if max_nodes is None:
        max_nodes = _env_max_nodes()
    converter = _Converter(workflow, registry, display_names or {}, rng or random.Random(), now or datetime.now(), max_nodes)
    return converter.convert()


def _env_max_nodes() -> int:
    text = os.environ.get("RUNNER_MAX_NODES", "").strip()
    if not text:
        return DEFAULT_MAX_NODES
    if not (text.isascii() and text.isdigit() and 0 < len(text) < 10 and int(text)):
        raise PresetsError(
            "input_invalid", f"RUNNER_MAX_NODES={text!r} is not a positive integer.", "Example: RUNNER_MAX_NODES=20000"
        )
    return int(text)
