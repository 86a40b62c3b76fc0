"""The one-worker model of the engine: runs own their progress and interrupts, and the engine
runs on a worker thread of an application whose event loop runs elsewhere."""

from __future__ import annotations

import asyncio
import threading


from diffusers_presets.runner.engine import Engine
from diffusers_presets.runner.engine.calls import run_awaitable

import engine_stubs as stubs
from engine_stubs import node


def steps_prompt(steps: int, tag: int) -> dict:
    # `tag` makes otherwise equal prompts distinct for the output cache
    return {"1": node("StubSteps", steps=steps), "2": node("StubInt", value=tag),
            "3": node("StubOutput", value=["1", 0]), "4": node("StubOutput", value=["2", 0])}


def run_collecting(engine: Engine, prompt: dict, prompt_id: str) -> tuple:
    validation = engine.validate(prompt)
    assert validation.ok
    events = []
    result = engine.run(validation, prompt_id, on_event=lambda event, data: events.append((event, data)))
    return result, events


def test_two_runs_on_two_threads_never_see_each_others_progress_or_interrupt() -> None:
    """Run A is interrupted (by prompt id) while run B, on another thread at the same time,
    goes on to the end and receives only its own progress events."""
    engine_a, engine_b = Engine(stubs.STUB_NODES), Engine(stubs.STUB_NODES)
    both_stepping = threading.Barrier(2, timeout=10)

    def at_step(step: int) -> None:
        if step == 2:
            both_stepping.wait()  # both runs are inside their step loops now
            if threading.current_thread().name == "run-a":
                engine_a.interrupt("prompt-a")

    stubs.StubSteps.HOOKS = [at_step]
    outcomes: dict[str, tuple] = {}

    def worker(engine: Engine, prompt_id: str, steps: int) -> None:
        outcomes[prompt_id] = run_collecting(engine, steps_prompt(steps, 1), prompt_id)

    threads = [threading.Thread(target=worker, args=(engine_a, "prompt-a", 4), name="run-a"),
               threading.Thread(target=worker, args=(engine_b, "prompt-b", 6), name="run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    result_a, events_a = outcomes["prompt-a"]
    result_b, events_b = outcomes["prompt-b"]
    assert result_a.status == "interrupted"
    assert result_b.status == "success"
    progress_b = [(d["prompt_id"], d["value"], d["max"]) for e, d in events_b if e == "progress"]
    assert progress_b == [("prompt-b", step, 6) for step in range(1, 7)]
    progress_a = [(d["prompt_id"], d["value"], d["max"]) for e, d in events_a if e == "progress"]
    assert progress_a == [("prompt-a", 1, 4)]


def test_interrupt_of_another_prompt_id_does_not_stop_the_running_one() -> None:
    engine = Engine(stubs.STUB_NODES)
    stubs.StubSteps.HOOKS = [lambda step: engine.interrupt("someone-else") if step == 1 else None]
    result, _ = run_collecting(engine, steps_prompt(3, 1), "mine")
    assert result.status == "success"
    assert engine.interrupt() is False  # nothing runs now


def test_engine_on_a_worker_thread_while_the_main_thread_runs_a_loop() -> None:
    """The server's shape: an asyncio loop serves requests in the main thread and hands
    prompts with async node functions to a worker thread."""
    engine = Engine(stubs.STUB_NODES)
    prompt = {"1": node("StubAsync", value=4), "2": node("StubOutput", value=["1", 0])}

    async def serve() -> list:
        loop = asyncio.get_running_loop()
        heartbeats = []

        async def heartbeat() -> None:  # the loop stays responsive while the worker runs
            while True:
                heartbeats.append(loop.time())
                await asyncio.sleep(0.001)

        beating = asyncio.create_task(heartbeat())
        results = []
        for tag in range(3):
            prompt["1"]["inputs"]["value"] = tag
            validation = engine.validate(prompt)
            results.append(await loop.run_in_executor(None, engine.run, validation, f"p{tag}"))
        beating.cancel()
        assert heartbeats
        return results

    results = asyncio.run(serve())
    assert [r.status for r in results] == ["success"] * 3
    assert [r.outputs["2"] for r in results] == [{"values": [0]}, {"values": [2]}, {"values": [4]}]


def test_async_node_called_from_inside_a_running_loop() -> None:
    """Synchronous engine code reached from a coroutine (a loop already running on this
    thread) still completes an awaitable instead of raising."""

    async def double(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    async def inside_loop() -> int:
        return run_awaitable(double(21))

    assert asyncio.run(inside_loop()) == 42
    assert run_awaitable(double(2)) == 4  # and from plain synchronous code
