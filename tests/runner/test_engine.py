"""Engine conformance with stub nodes: caching, IS_CHANGED, lists, lazy inputs, hidden inputs,
events, failures and interrupts."""

from __future__ import annotations

import pytest

from diffusers_presets.runner.engine import Engine

import engine_stubs as stubs
from engine_stubs import CALLS, calls_of, node


@pytest.fixture
def engine():
    return Engine(stubs.STUB_NODES)


def run(engine, prompt, **kwargs):
    validation = engine.validate(prompt)
    assert validation.ok, validation.node_errors or validation.error
    events = []
    result = engine.run(validation, on_event=lambda e, d: events.append((e, d)), **kwargs)
    return result, events


def chain(seed=1):
    return {
        "1": node("StubInt", value=2),
        "2": node("StubSeeded", seed=seed, value=["1", 0]),
        "3": node("StubInt", value=5),
        "4": node("StubAdd", a=["2", 0], b=["3", 0]),
        "5": node("StubOutput", value=["4", 0]),
    }


def test_runs_and_reports_ui(engine):
    result, events = run(engine, chain())
    assert result.status == "success"
    assert result.outputs == {"5": {"values": [1007]}}
    names = [e for e, _ in events]
    assert names[0] == "execution_start" and names[1] == "execution_cached"
    assert names[-1] == "execution_success"
    assert names.count("executing") == 5
    assert ("executed", {"node": "5", "display_node": "5", "output": {"values": [1007]}, "prompt_id": result.prompt_id}) in events


def test_unchanged_second_run_executes_nothing(engine):
    run(engine, chain())
    CALLS.clear()
    result, events = run(engine, chain())
    assert CALLS == []
    assert result.executed == []
    assert sorted(result.cached) == ["1", "2", "3", "4", "5"]
    # the cached output node re-sends its UI, as ComfyUI does
    assert [d["node"] for e, d in events if e == "executed"] == ["5"]
    assert result.outputs == {"5": {"values": [1007]}}


def test_changing_seed_reruns_only_dependents(engine):
    run(engine, chain(seed=1))
    CALLS.clear()
    result, _ = run(engine, chain(seed=2))
    assert sorted(result.executed) == ["2", "4", "5"]
    assert [c for c, _ in CALLS].count("StubInt") == 0
    assert result.outputs["5"] == {"values": [2007]}


def test_node_ids_do_not_matter_for_cache(engine):
    run(engine, chain())
    CALLS.clear()
    renamed = {str(int(k) + 100): v for k, v in chain().items()}
    for n in renamed.values():
        for name, value in n["inputs"].items():
            if isinstance(value, list):
                n["inputs"][name] = [str(int(value[0]) + 100), value[1]]
    result, _ = run(engine, renamed)
    assert CALLS == []


def test_only_outputs_and_ancestors_run(engine):
    prompt = chain()
    prompt["9"] = node("StubInt", value=99)  # dangling, not an ancestor of an output
    result, _ = run(engine, prompt)
    assert "9" not in result.executed
    assert {"value": 99} not in calls_of("StubInt")


def test_is_changed(engine):
    prompt = {"1": node("StubIsChanged", value=1), "2": node("StubOutput", value=["1", 0])}
    run(engine, prompt)
    CALLS.clear()
    run(engine, prompt)
    assert CALLS == []
    stubs.StubIsChanged.TOKEN = "b"
    try:
        result, _ = run(engine, prompt)
    finally:
        stubs.StubIsChanged.TOKEN = "a"
    assert sorted(result.executed) == ["1", "2"]


def test_is_changed_nan_always_reruns(engine):
    prompt = {"1": node("StubAlwaysChanged", value=1), "2": node("StubOutput", value=["1", 0])}
    run(engine, prompt)
    result, _ = run(engine, prompt)
    assert sorted(result.executed) == ["1", "2"]


def test_cache_keeps_only_entries_of_the_last_prompt(engine):
    run(engine, chain(seed=1))
    run(engine, chain(seed=2))
    CALLS.clear()
    result, _ = run(engine, chain(seed=1))
    assert sorted(result.executed) == ["2", "4", "5"]


def test_node_instances_persist(engine):
    stubs.StubInstanceCounter.created = 0
    prompt = {"1": node("StubInstanceCounter", value=1), "2": node("StubOutput", value=["1", 0])}
    run(engine, prompt)
    prompt["1"]["inputs"]["value"] = 2
    run(engine, prompt)
    assert stubs.StubInstanceCounter.created == 1


def test_list_semantics(engine):
    prompt = {
        "1": node("StubList", count=3),
        "2": node("StubInt", value=10),
        "3": node("StubAdd", a=["1", 0], b=["2", 0]),  # called once per element, b repeated
        "4": node("StubListSum", values=["3", 0]),  # INPUT_IS_LIST: called once with the list
        "5": node("StubOutput", value=["3", 0]),  # ui concatenated across calls
        "6": node("StubOutput", value=["4", 0]),
    }
    result, _ = run(engine, prompt)
    assert calls_of("StubAdd") == [{"a": 0, "b": 10}, {"a": 1, "b": 10}, {"a": 2, "b": 10}]
    assert calls_of("StubListSum") == [{"values": [10, 11, 12]}]
    assert result.outputs["5"] == {"values": [10, 11, 12]}
    assert result.outputs["6"] == {"values": [33]}


def test_input_is_list_output_node(engine):
    prompt = {"1": node("StubList", count=2), "2": node("StubListOutput", value=["1", 0])}
    result, _ = run(engine, prompt)
    assert calls_of("StubListOutput") == [{"value": [0, 1]}]
    assert result.outputs["2"] == {"values": [[0, 1]]}


@pytest.mark.parametrize("switch,expected", [(True, 1), (False, 2)])
def test_lazy_inputs_only_evaluate_what_is_needed(engine, switch, expected):
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("StubInt", value=2),
        "3": node("StubLazySwitch", switch=switch, on_true=["1", 0], on_false=["2", 0]),
        "4": node("StubOutput", value=["3", 0]),
    }
    result, _ = run(engine, prompt)
    assert result.outputs["4"] == {"values": [expected]}
    assert calls_of("StubInt") == [{"value": expected}]


def test_hidden_inputs(engine):
    prompt = {"7": {"class_type": "StubHidden", "inputs": {"value": "3"}, "_meta": {"title": "H"}}}
    result, _ = run(engine, prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    (call,) = calls_of("StubHidden")
    assert call["unique_id"] == "7"
    assert call["extra_pnginfo"] == {"workflow": {"nodes": []}}
    # PROMPT is the validated prompt: the string "3" was coerced to an int
    assert call["prompt"]["7"]["inputs"]["value"] == 3
    assert call["prompt"]["7"]["_meta"] == {"title": "H"}
    assert result.outputs["7"] == {"ids": ["7"]}


def test_unique_id_enters_the_cache_key(engine):
    run(engine, {"1": node("StubHidden", value=1)})
    CALLS.clear()
    run(engine, {"2": node("StubHidden", value=1)})
    assert len(calls_of("StubHidden")) == 1


def test_async_function(engine):
    result, _ = run(engine, {"1": node("StubAsync", value=4), "2": node("StubOutput", value=["1", 0])})
    assert result.outputs["2"] == {"values": [8]}


def test_first_failure_stops_the_prompt(engine):
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("StubFail", value=["1", 0]),
        "3": node("StubOutput", value=["2", 0]),
        "4": node("StubInt", value=7),
        "5": node("StubOutput", value=["4", 0]),
    }
    result, events = run(engine, prompt)
    assert result.status == "error"
    error = result.error
    assert error["node_id"] == "2" and error["node_type"] == "StubFail"
    assert error["exception_type"] == "ValueError"
    assert error["exception_message"] == "stub failure for 1"
    assert error["current_inputs"] == {"value": [1]}
    assert isinstance(error["traceback"], list)
    assert events[-1][0] == "execution_error"
    assert "execution_success" not in [e for e, _ in events]
    # nothing after the failure ran (output node 5 was picked first or never)
    assert len(calls_of("StubFail")) == 1
    assert "3" not in result.executed


def test_presets_error_carries_its_code(engine):
    from diffusers_presets.core.errors import PresetsError

    class Raising(stubs.StubInt):
        def run(self, value):
            raise PresetsError("input_invalid", "bad value", "use another")

    engine.registry = {**stubs.STUB_NODES, "Raising": Raising}
    result, _ = run(engine, {"1": node("Raising", value=1), "2": node("StubOutput", value=["1", 0])})
    assert result.error["error_code"] == "input_invalid"
    assert result.error["fix"] == "use another"


def test_progress_is_attributed_to_the_running_node(engine):
    result, events = run(engine, {"1": node("StubSteps", steps=3), "2": node("StubOutput", value=["1", 0])})
    progress = [d for e, d in events if e == "progress"]
    assert [(d["value"], d["max"], d["node"]) for d in progress] == [(1, 3, "1"), (2, 3, "1"), (3, 3, "1")]


def test_interrupt_stops_at_the_next_step(engine):
    stubs.StubSteps.HOOKS = [lambda step: engine.interrupt() if step == 2 else None]
    prompt = {"1": node("StubSteps", steps=5), "2": node("StubOutput", value=["1", 0])}
    result, events = run(engine, prompt)
    assert result.status == "interrupted"
    assert events[-1][0] == "execution_interrupted"
    assert events[-1][1]["node_id"] == "1"
    assert [d["value"] for e, d in events if e == "progress"] == [1]
    assert calls_of("StubOutput") == []
    # the next prompt runs normally
    stubs.StubSteps.HOOKS = []
    result, _ = run(engine, prompt)
    assert result.status == "success"


def test_dependency_cycle_through_lazy_link_at_run_time(engine):
    # statically a cycle is a validation error (see test_validation); this checks the engine
    # still terminates if one slips through
    prompt = {
        "1": node("StubAdd", a=["2", 0], b=1),
        "2": node("StubAdd", a=["1", 0], b=1),
        "3": node("StubOutput", value=["1", 0]),
    }
    validation = engine.validate(prompt)
    assert not validation.ok
    validation.ok = True
    validation.outputs = ["3"]
    result = engine.run(validation)
    assert result.status == "error"
    assert result.error["exception_type"] == "graph.DependencyCycleError"
