"""Prompt validation with ComfyUI's error types and ``node_errors`` shape (contract §3.1).

Differences from ComfyUI 0.3.64, all towards clearer reports: every unknown node type is listed
in ``node_errors`` (type ``missing_node_type``, as newer ComfyUI names it), links to missing
nodes or slots are ``bad_linked_input`` instead of a KeyError, and cycles are reported as
``dependency_cycle`` (as newer ComfyUI does) instead of overflowing the stack.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

from .calls import map_over_list
from .schema import (
    PRIMITIVE_TYPES,
    InputSpec,
    NodeSchema,
    SchemaCache,
    display_title,
    is_output_node,
    return_types,
    types_match,
)

log = logging.getLogger(__name__)

Registry = Mapping[str, type]


@dataclass
class ValidationResult:
    ok: bool
    error: Optional[dict]
    outputs: list[str]  # output nodes that validated and will run
    node_errors: dict[str, dict]
    prompt: dict  # the prompt with coerced values; what the engine executes
    schemas: SchemaCache = field(default_factory=SchemaCache, repr=False)

    def to_response(self) -> dict:
        """The body ComfyUI's ``POST /prompt`` returns on a validation failure."""
        return {"error": self.error, "node_errors": self.node_errors}


@lru_cache(maxsize=1)
def comfy_core_node_names() -> frozenset[str]:
    text = (Path(__file__).with_name("comfy_core_nodes.txt")).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _error(kind: str, message: str, details: str, **extra: Any) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _invalid_prompt(details: str) -> ValidationResult:
    return ValidationResult(False, _error("invalid_prompt", "Invalid prompt", details), [], {}, {})


def _copy_prompt(prompt: Any) -> tuple[Optional[dict], str]:
    """Shallow-copy nodes and their inputs (validation writes coerced values back)."""
    if not isinstance(prompt, dict):
        return None, "The prompt must be a JSON object mapping node ids to nodes."
    copied = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            return None, f"Node '{node_id}' must be a JSON object with class_type and inputs."
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            return None, f"Node '{node_id}': 'inputs' must be a JSON object."
        copied[str(node_id)] = {**node, "inputs": dict(inputs)}
    return copied, ""


def _missing_type_error(node_id: str, node: Mapping[str, Any]) -> dict:
    class_type = node.get("class_type")
    title = display_title(node, node_id)
    if class_type in comfy_core_node_names():
        hint = (
            f"'{class_type}' is a ComfyUI core node; the headless runner only has the "
            "Diffusers Presets nodes and SaveImage, PreviewImage, LoadImage and the Primitive "
            "nodes. Run this workflow in ComfyUI, or rebuild it with Diffusers Presets nodes."
        )
    else:
        hint = (
            f"No installed node pack provides '{class_type}'. Install the pack that provides "
            "it in ComfyUI, or remove the node from the workflow."
        )
    return _error(
        "missing_node_type",
        f"Node '{title}' not found. The custom node may not be installed.",
        hint,
        node_id=node_id,
        class_type=class_type,
        node_title=title,
    )


class _Validator:
    def __init__(self, prompt: dict, registry: Registry, schemas: SchemaCache) -> None:
        self.prompt = prompt
        self.registry = registry
        self.schemas = schemas
        self.own_errors: dict[str, list[dict]] = {}
        self.parents: dict[str, list[str]] = {}
        self.valid: dict[str, bool] = {}

    # --- one node's own inputs -------------------------------------------------------------
    def check_node(self, node_id: str, is_output: bool) -> None:
        node = self.prompt[node_id]
        class_def = self.registry[node["class_type"]]
        schema = self.schemas(class_def)
        inputs = node["inputs"]
        validate_fn = getattr(class_def, "VALIDATE_INPUTS", None)
        validate_args: list[str] = []
        validate_kwargs = False
        if validate_fn is not None:
            spec = inspect.getfullargspec(validate_fn)
            validate_args = spec.args
            validate_kwargs = spec.varkw is not None
        errors: list[dict] = []
        parents: list[str] = []
        received_types: dict[str, Any] = {}
        for spec in schema.declared():
            name = spec.name
            if name not in inputs or inputs[name] is None:  # a null (`--set 3.pipeline=null`) is no value
                if spec.category == "required":
                    details = name if name not in inputs else f"{name} is null"
                    errors.append(
                        _error("required_input_missing", "Required input is missing", details, input_name=name)
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                parent = self._check_link(spec, value, errors, received_types, "input_types" in validate_args)
                if parent is not None:
                    parents.append(parent)
                continue
            checked = name not in validate_args and not validate_kwargs
            self._check_constant(spec, inputs, errors, checked)
        # Links to inputs the class does not declare still feed the node (dynamic inputs).
        for name, value in inputs.items():
            if schema.get(name) is None and isinstance(value, list) and len(value) == 2:
                if not _function_accepts(class_def, name):  # it would fail with "unexpected keyword"
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, the node has no such input",
                            f"{name}: {node['class_type']} has no input {name!r}; its inputs are: "
                            f"{', '.join(schema.order)}",
                            input_name=name,
                            received_value=value,
                        )
                    )
                    continue
                parent = self._check_link(InputSpec(name, "optional", ("*",)), value, errors, received_types, True)
                if parent is not None:
                    parents.append(parent)
        if validate_fn is not None and (validate_args or validate_kwargs):
            errors.extend(self._custom_validation(node_id, class_def, schema, validate_args, validate_kwargs, received_types, is_output))
        self.own_errors[node_id] = errors
        self.parents[node_id] = parents

    def _check_link(
        self, spec: InputSpec, value: list, errors: list, received_types: dict, skip_type_check: bool
    ) -> Optional[str]:
        name = spec.name
        info = spec.config()
        if len(value) != 2:
            errors.append(
                _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=value,
                )
            )
            return None
        source, slot = value
        problem = None
        if not isinstance(source, str):
            problem = f"{name}: the node id must be a string, got {source!r}"
        elif source not in self.prompt:
            problem = f"{name}: linked node '{source}' does not exist in the prompt"
        elif not isinstance(slot, int) or isinstance(slot, bool):
            problem = f"{name}: the output slot must be an integer, got {slot!r}"
        else:
            source_class = self.registry.get(self.prompt[source].get("class_type"))
            outputs = return_types(source_class) if source_class is not None else ()
            if source_class is not None and not 0 <= slot < len(outputs):
                problem = f"{name}: node '{source}' has {len(outputs)} outputs, no slot {slot}"
        if problem:
            errors.append(
                _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    problem,
                    input_name=name,
                    input_config=info,
                    received_value=value,
                )
            )
            return None
        source_class = self.registry.get(self.prompt[source].get("class_type"))
        if source_class is None:
            return source  # reported as missing_node_type
        received = return_types(source_class)[slot]
        received_types[name] = received
        if not skip_type_check and not types_match(received, spec.type):
            errors.append(
                _error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({spec.type})",
                    input_name=name,
                    input_config=info,
                    received_type=received,
                    linked_node=value,
                )
            )
            return None
        return source

    def _check_constant(self, spec: InputSpec, inputs: dict, errors: list, checked: bool) -> None:
        name = spec.name
        value = inputs[name]
        info = spec.config()
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        kind = spec.type
        if kind in PRIMITIVE_TYPES:
            try:
                value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}[kind](value)
            except Exception as ex:  # noqa: BLE001 - any conversion failure is a user error
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {kind} value",
                        f"{name}, {value}, {ex}",
                        input_name=name,
                        input_config=info,
                        received_value=value,
                        exception_message=str(ex),
                    )
                )
                return
            inputs[name] = value
        if not checked:
            return
        options = spec.options
        try:
            if "min" in options and value < options["min"]:
                errors.append(
                    _error(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {options['min']}",
                        name,
                        input_name=name,
                        input_config=info,
                        received_value=value,
                    )
                )
                return
            if "max" in options and value > options["max"]:
                errors.append(
                    _error(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {options['max']}",
                        name,
                        input_name=name,
                        input_config=info,
                        received_value=value,
                    )
                )
                return
        except TypeError as ex:
            errors.append(
                _error(
                    "invalid_input_type",
                    f"Failed to compare the input value with the {kind} limits",
                    f"{name}, {value}, {ex}",
                    input_name=name,
                    input_config=info,
                    received_value=value,
                    exception_message=str(ex),
                )
            )
            return
        combo = spec.combo_options
        if combo is not None and isinstance(value, str) and "\\" in value and not self._in_combo(value, combo):
            # File names in workflows saved on Windows use backslashes; the lists here use "/".
            posix = value.replace("\\", "/")
            if posix in combo:
                inputs[name] = value = posix
        if combo is not None and not self._in_combo(value, combo):
            listed = f"(list of length {len(combo)})" if len(combo) > 20 else str(combo)
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listed}",
                    input_name=name,
                    input_config=None if len(combo) > 20 else info,
                    received_value=value,
                )
            )

    @staticmethod
    def _in_combo(value: Any, combo: list) -> bool:
        try:
            return value in combo
        except TypeError:
            return False

    def _custom_validation(
        self,
        node_id: str,
        class_def: type,
        schema: NodeSchema,
        args: list[str],
        has_kwargs: bool,
        received_types: dict,
        is_output: bool,
    ) -> list[dict]:
        inputs = self.prompt[node_id]["inputs"]
        data: dict[str, list] = {}
        for name, value in inputs.items():
            if name not in args and not has_kwargs:
                continue
            if schema.get(name) is None:
                continue
            data[name] = [None] if isinstance(value, list) else [value]
        for name, kind in schema.hidden.items():
            if name in args or has_kwargs:
                data[name] = [node_id if kind == "UNIQUE_ID" else ({} if kind == "PROMPT" else None)]
        if "input_types" in args:
            data["input_types"] = [received_types]
        try:
            results = map_over_list(class_def.VALIDATE_INPUTS, data, getattr(class_def, "INPUT_IS_LIST", False))
        except Exception as ex:  # noqa: BLE001 - a node's validator failing is reported, not raised
            kind = "exception_during_validation" if is_output else "exception_during_inner_validation"
            return [
                _error(
                    kind,
                    "Exception when validating node" if is_output else "Exception when validating inner node",
                    str(ex),
                    exception_type=_full_type_name(type(ex)),
                    exception_message=str(ex),
                    traceback=traceback.format_tb(ex.__traceback__),
                )
            ]
        errors = []
        for name in data:
            for result in results:
                if result is True:
                    continue
                details = name if result is False else f"{name} - {result}"
                errors.append(
                    _error("custom_validation_failed", "Custom validation failed for node", details, input_name=name)
                )
        return errors

    # --- the graph ---------------------------------------------------------------------------
    def walk(self, output_id: str, outputs: set[str]) -> bool:
        """Validate ``output_id`` and its ancestors (iterative DFS, cycles detected)."""
        if output_id in self.valid:
            return self.valid[output_id]
        on_stack: dict[str, int] = {}
        stack: list[tuple[str, int]] = [(output_id, 0)]
        path: list[str] = []
        while stack:
            node_id, index = stack.pop()
            if index == 0:
                if node_id in self.valid:
                    continue
                if node_id not in self.own_errors:
                    self.check_node(node_id, node_id in outputs)
                on_stack[node_id] = len(path)
                path.append(node_id)
            parents = self.parents[node_id]
            if index < len(parents):
                stack.append((node_id, index + 1))
                parent = parents[index]
                if parent in on_stack:
                    self._report_cycle(path[on_stack[parent]:])
                elif parent not in self.valid:
                    stack.append((parent, 0))
                continue
            path.pop()
            del on_stack[node_id]
            self.valid[node_id] = not self.own_errors[node_id] and all(
                self.valid.get(parent, False) for parent in parents
            )
        return self.valid[output_id]

    def _report_cycle(self, cycle: list[str]) -> None:
        for node_id in cycle:
            errors = self.own_errors[node_id]
            if any(e["type"] == "dependency_cycle" for e in errors):
                continue
            errors.append(
                _error(
                    "dependency_cycle",
                    "Dependency cycle detected",
                    f"Node {node_id} is part of a cycle: {' -> '.join(cycle + cycle[:1])}",
                    cycle_nodes=list(cycle),
                )
            )


def _function_accepts(class_def: type, name: str) -> bool:
    """Whether the node's FUNCTION takes a keyword ``name`` (or ``**kwargs``)."""
    func = getattr(class_def, getattr(class_def, "FUNCTION", ""), None)
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # no function, or a builtin without a signature
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def validate_prompt(
    prompt: Any, registry: Registry, targets: Optional[list[str]] = None
) -> ValidationResult:
    """Validate an API prompt against ``registry`` (class_type → V1 node class).

    ``targets`` restricts the outputs (``partial_execution_targets``). The returned prompt is a
    copy with coerced values; ``ok`` is true when at least one output validated, as in ComfyUI
    (``node_errors`` may still list errors of the other outputs).
    """
    copied, problem = _copy_prompt(prompt)
    if copied is None:
        return _invalid_prompt(problem)
    missing: dict[str, dict] = {}
    outputs: list[str] = []
    for node_id, node in copied.items():
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            error = _error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
            return ValidationResult(False, error, [], {}, copied)
        class_def = registry.get(class_type)
        if class_def is None:
            missing[node_id] = {"errors": [_missing_type_error(node_id, node)], "dependent_outputs": [], "class_type": class_type}
        elif is_output_node(class_def) and (targets is None or node_id in targets):
            outputs.append(node_id)
    if missing:
        first = next(iter(missing.values()))["errors"][0]
        return ValidationResult(False, first, [], missing, copied)
    if not outputs:
        error = _error("prompt_no_outputs", "Prompt has no outputs", "", )
        return ValidationResult(False, error, [], {}, copied)

    schemas = SchemaCache()
    validator = _Validator(copied, registry, schemas)
    good: list[str] = []
    node_errors: dict[str, dict] = {}
    for output_id in outputs:
        if validator.walk(output_id, set(outputs)):
            good.append(output_id)
            continue
        for node_id in _ancestors(output_id, validator.parents):
            errors = validator.own_errors.get(node_id)
            if not errors:
                continue
            entry = node_errors.setdefault(
                node_id, {"errors": errors, "dependent_outputs": [], "class_type": copied[node_id]["class_type"]}
            )
            entry["dependent_outputs"].append(output_id)
    for node_id, entry in node_errors.items():
        for error in entry["errors"]:
            log.debug("validation: node %s (%s): %s: %s", node_id, entry["class_type"], error["message"], error["details"])
    if not good:
        details = "\n".join(
            f"{e['message']}: {e['details']}" for entry in node_errors.values() for e in entry["errors"]
        )
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return ValidationResult(False, error, [], node_errors, copied, schemas)
    return ValidationResult(True, None, good, node_errors, copied, schemas)


def _ancestors(node_id: str, parents: Mapping[str, list[str]]) -> list[str]:
    seen = {node_id}
    order = [node_id]
    stack = [node_id]
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in seen and parent in parents:
                seen.add(parent)
                order.append(parent)
                stack.append(parent)
    return order
