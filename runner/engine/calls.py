"""Calling node functions the way ComfyUI does: list mapping and result merging (contract §3.4)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Mapping, Optional


def call_function(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a node function; ``async def`` functions are run to completion."""
    if inspect.iscoroutinefunction(func):
        return asyncio.run(func(**kwargs))
    result = func(**kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def map_over_list(
    func: Callable[..., Any],
    inputs: Mapping[str, list],
    input_is_list: bool,
    before_call: Optional[Callable[[], None]] = None,
) -> list:
    """Call ``func`` once with the lists (INPUT_IS_LIST) or once per element, repeating the
    last element of shorter lists; no inputs means one call."""
    if input_is_list:
        calls = [dict(inputs)]
    else:
        count = max((len(v) for v in inputs.values()), default=0)
        calls = [
            {k: v[i if i < len(v) else -1] for k, v in inputs.items() if v} for i in range(count)
        ] or [{}]
    results = []
    for kwargs in calls:
        if before_call is not None:
            before_call()
        results.append(call_function(func, kwargs))
    return results


def merge_results(results: list[Any], output_is_list: Optional[tuple]) -> list[list]:
    """Per output slot, collect the per-call values into one list (flattened where
    OUTPUT_IS_LIST says the call returned a list)."""
    if not results:
        return []
    slots = len(results[0])
    flags = list(output_is_list or ()) + [False] * slots
    merged = []
    for slot in range(slots):
        if flags[slot]:
            merged.append([item for result in results for item in result[slot]])
        else:
            merged.append([result[slot] for result in results])
    return merged


def merge_ui(uis: list[Mapping[str, Any]]) -> dict:
    """Concatenate the ``ui`` dicts of each call, keyed by the first call's keys."""
    if not uis:
        return {}
    return {key: [item for ui in uis for item in ui.get(key, [])] for key in uis[0]}
