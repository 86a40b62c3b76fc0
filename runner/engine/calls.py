"""Calling node functions the way ComfyUI does: list mapping and result merging (contract §3.4)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Mapping, Optional

# One event loop per worker thread for async node functions, reused across calls.
_thread_loops = threading.local()


def call_function(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a node function; ``async def`` functions (and returned awaitables) are run to
    completion on this thread's own loop."""
    result = func(**kwargs)
    if inspect.isawaitable(result):
        return run_awaitable(result)
    return result


def run_awaitable(awaitable: Awaitable[Any]) -> Any:
    """Run ``awaitable`` to completion from synchronous code and return its result.

    The engine runs on a worker thread while the application's loop (the server's) runs on
    another; ``asyncio.run`` would also close a fresh loop per call. So each worker thread
    keeps one private loop. Called from a thread whose loop is already running (a node run
    from inside a coroutine), the awaitable runs on a helper thread, in the caller's context,
    instead of failing with "cannot be called from a running event loop"."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run_until_complete(_await(awaitable))
    context = contextvars.copy_context()  # keeps the run's progress and interrupt scope
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-async") as pool:
        return pool.submit(context.run, asyncio.run, _await(awaitable)).result()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_loops.loop = asyncio.new_event_loop()
    return loop


async def _await(awaitable: Awaitable[Any]) -> Any:
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
