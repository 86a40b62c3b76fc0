"""Which node runs next: a topological dissolve of the nodes the outputs need (contract §3.2).

Only the outputs and their uncached ancestors are added; lazy links are not dependencies until
the node asks for them (:meth:`Schedule.require`). Ready nodes are picked output-first, then
nodes that feed an output, then in the order they became ready.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from .schema import SchemaCache, is_link, is_output_node


class DependencyCycleError(Exception):
    pass


class Schedule:
    def __init__(
        self,
        prompt: Mapping[str, Mapping[str, Any]],
        registry: Mapping[str, type],
        schemas: SchemaCache,
        is_done: Callable[[str], bool],
    ) -> None:
        self._prompt = prompt
        self._registry = registry
        self._schemas = schemas
        self._is_done = is_done
        self._blocked_by: dict[str, int] = {}  # pending node -> unfinished dependencies
        self._blocks: dict[str, set[str]] = {}  # pending node -> pending nodes waiting on it
        self._ready: dict[str, None] = {}
        self._ready_outputs: dict[str, None] = {}
        self._ready_feeders: dict[str, None] = {}

    def _is_output(self, node_id: str) -> bool:
        return is_output_node(self._registry[self._prompt[node_id]["class_type"]])

    def add(self, node_id: str) -> None:
        """Add ``node_id`` and every non-lazy, not yet computed ancestor."""
        added = []
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in self._blocked_by:
                continue
            self._blocked_by[current] = 0
            self._blocks[current] = set()
            added.append(current)
            node = self._prompt[current]
            schema = self._schemas(self._registry[node["class_type"]])
            for name, value in node["inputs"].items():
                if not is_link(value):
                    continue
                spec = schema.get(name)
                if spec is not None and spec.lazy:
                    continue
                if not self._is_done(value[0]):
                    stack.append(value[0])
        for current in added:
            node = self._prompt[current]
            schema = self._schemas(self._registry[node["class_type"]])
            for name, value in node["inputs"].items():
                if is_link(value) and not (schema.get(name) is not None and schema.get(name).lazy):
                    self._link(value[0], current)
        for current in added:
            if self._blocked_by[current] == 0:
                self._make_ready(current)

    def require(self, node_id: str, input_name: str) -> bool:
        """Turn a lazy input of ``node_id`` into a dependency; False if nothing to wait for."""
        value = self._prompt[node_id]["inputs"].get(input_name)
        if not is_link(value):
            raise ValueError(
                f"Node {node_id} asked for input '{input_name}', which is not linked to another node"
            )
        source = value[0]
        if self._is_done(source):
            return False
        self.add(source)
        return self._link(source, node_id)

    def _link(self, source: str, target: str) -> bool:
        if self._is_done(source) or source not in self._blocks or target in self._blocks[source]:
            return False
        self._blocks[source].add(target)
        self._blocked_by[target] += 1
        self._drop_ready(target)
        return True

    def _make_ready(self, node_id: str) -> None:
        self._ready[node_id] = None
        if self._is_output(node_id):
            self._ready_outputs[node_id] = None
        elif any(self._is_output(child) for child in self._blocks[node_id]):
            self._ready_feeders[node_id] = None

    def _drop_ready(self, node_id: str) -> None:
        self._ready.pop(node_id, None)
        self._ready_outputs.pop(node_id, None)
        self._ready_feeders.pop(node_id, None)

    def is_empty(self) -> bool:
        return not self._blocked_by

    def next(self) -> Optional[str]:
        """The node to run next (it stays pending until :meth:`complete`); raises on a cycle."""
        if not self._blocked_by:
            return None
        for pool in (self._ready_outputs, self._ready_feeders, self._ready):
            if pool:
                node_id = next(iter(pool))
                self._drop_ready(node_id)
                return node_id
        raise DependencyCycleError("Dependency cycle detected")

    def retry(self, node_id: str) -> None:
        """``node_id`` asked for lazy inputs; it becomes ready again once they are computed."""
        if self._blocked_by[node_id] == 0:
            self._make_ready(node_id)

    def complete(self, node_id: str) -> None:
        del self._blocked_by[node_id]
        self._drop_ready(node_id)
        for child in self._blocks.pop(node_id):
            self._blocked_by[child] -= 1
            if self._blocked_by[child] == 0:
                self._make_ready(child)

    def cycle_nodes(self) -> list[str]:
        return list(self._blocked_by)
