"""Every validation error type, with ComfyUI's ``node_errors`` shape."""

from __future__ import annotations

import pytest

from diffusers_presets.runner.engine import validate_prompt

import engine_stubs as stubs


def node(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def typed(**overrides):
    inputs = {"text": "t", "ratio": 0.5, "flag": True, "mode": "fast", "image": ["1", 0]}
    inputs.update(overrides)
    return {"1": node("StubImage"), "2": node("StubTyped", **inputs), "3": node("StubOutput", value=["2", 0])}


def errors_of(result, node_id):
    return [e["type"] for e in result.node_errors[node_id]["errors"]]


def test_valid_prompt_coerces_values():
    result = validate_prompt(typed(text=5, ratio="0.25", flag=1, extra="4"), stubs.STUB_NODES)
    assert result.ok and result.outputs == ["3"] and result.node_errors == {}
    inputs = result.prompt["2"]["inputs"]
    assert inputs["text"] == "5" and inputs["ratio"] == 0.25 and inputs["flag"] is True and inputs["extra"] == 4


def test_value_wrapper_is_unwrapped():
    result = validate_prompt(typed(text={"__value__": ["a"]}), stubs.STUB_NODES)
    assert result.ok
    assert result.prompt["2"]["inputs"]["text"] == "['a']"


def test_does_not_touch_the_callers_prompt():
    prompt = typed(ratio="0.25")
    validate_prompt(prompt, stubs.STUB_NODES)
    assert prompt["2"]["inputs"]["ratio"] == "0.25"


@pytest.mark.parametrize(
    "overrides,kind",
    [
        ({"ratio": "abc"}, "invalid_input_type"),
        ({"extra": [1, 2, 3]}, "bad_linked_input"),
        ({"ratio": 2.0}, "value_bigger_than_max"),
        ({"ratio": -1}, "value_smaller_than_min"),
        ({"mode": "medium"}, "value_not_in_list"),
        ({"image": ["9", 0]}, "bad_linked_input"),
        ({"image": ["1", 3]}, "bad_linked_input"),
        ({"image": [1, 0]}, "bad_linked_input"),
    ],
)
def test_input_errors(overrides, kind):
    result = validate_prompt(typed(**overrides), stubs.STUB_NODES)
    assert not result.ok
    assert result.error["type"] == "prompt_outputs_failed_validation"
    assert errors_of(result, "2") == [kind]
    entry = result.node_errors["2"]
    assert entry["class_type"] == "StubTyped" and entry["dependent_outputs"] == ["3"]
    error = entry["errors"][0]
    assert set(error) == {"type", "message", "details", "extra_info"}
    assert error["extra_info"]["input_name"] in overrides


def test_required_input_missing():
    prompt = typed()
    del prompt["2"]["inputs"]["mode"]
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert errors_of(result, "2") == ["required_input_missing"]
    assert result.node_errors["2"]["errors"][0]["details"] == "mode"


def test_return_type_mismatch():
    prompt = typed()
    prompt["1"] = node("StubInt", value=1)
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert errors_of(result, "2") == ["return_type_mismatch"]
    assert result.node_errors["2"]["errors"][0]["extra_info"]["received_type"] == "INT"


def test_custom_validation_failed_skips_builtin_range_check():
    # VALIDATE_INPUTS names `value`, so min/max are not applied (13 > max 10 passes them)
    prompt = {"1": node("StubValidated", value=13), "2": node("StubOutput", value=["1", 0])}
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert errors_of(result, "1") == ["custom_validation_failed"]
    assert result.node_errors["1"]["errors"][0]["details"] == "value - thirteen is unlucky"
    prompt["1"]["inputs"]["value"] = 50
    assert validate_prompt(prompt, stubs.STUB_NODES).ok


def test_exception_during_validation():
    class Broken(stubs.StubValidated):
        @classmethod
        def VALIDATE_INPUTS(cls, value):
            raise RuntimeError("validator exploded")

    registry = {**stubs.STUB_NODES, "Broken": Broken}
    result = validate_prompt({"1": node("Broken", value=1), "2": node("StubOutput", value=["1", 0])}, registry)
    assert errors_of(result, "1") == ["exception_during_inner_validation"]
    assert "validator exploded" in result.node_errors["1"]["errors"][0]["details"]


def test_unknown_node_types_are_all_listed():
    prompt = {
        "1": {"class_type": "KSampler", "inputs": {}, "_meta": {"title": "My Sampler"}},
        "2": node("SomePackNode"),
        "3": node("StubOutput", value=1),
    }
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert not result.ok
    assert result.error["type"] == "missing_node_type"
    assert set(result.node_errors) == {"1", "2"}
    ksampler = result.node_errors["1"]["errors"][0]
    assert ksampler["extra_info"] == {"node_id": "1", "class_type": "KSampler", "node_title": "My Sampler"}
    assert "ComfyUI core node" in ksampler["details"]
    assert "ComfyUI core node" not in result.node_errors["2"]["errors"][0]["details"]


def test_missing_class_type():
    result = validate_prompt({"1": {"inputs": {}}}, stubs.STUB_NODES)
    assert result.error["type"] == "invalid_prompt"


@pytest.mark.parametrize("prompt", [[], {"1": 5}, {"1": {"class_type": "StubInt", "inputs": []}}, "x"])
def test_malformed_prompt(prompt):
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert not result.ok and result.error["type"] == "invalid_prompt"


def test_no_outputs():
    result = validate_prompt({"1": node("StubInt", value=1)}, stubs.STUB_NODES)
    assert result.error["type"] == "prompt_no_outputs"


def test_cycle():
    prompt = {
        "1": node("StubAdd", a=["2", 0], b=1),
        "2": node("StubAdd", a=["1", 0], b=1),
        "3": node("StubOutput", value=["1", 0]),
    }
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert not result.ok
    assert errors_of(result, "1") == ["dependency_cycle"] and errors_of(result, "2") == ["dependency_cycle"]
    assert sorted(result.node_errors["1"]["errors"][0]["extra_info"]["cycle_nodes"]) == ["1", "2"]


def test_downstream_nodes_do_not_own_upstream_errors():
    prompt = {
        "1": node("StubInt", value=500),
        "2": node("StubAdd", a=["1", 0], b=1),
        "3": node("StubOutput", value=["2", 0]),
    }
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert set(result.node_errors) == {"1"}


def test_partial_acceptance_and_targets():
    prompt = {
        "1": node("StubInt", value=500),
        "2": node("StubOutput", value=["1", 0]),
        "3": node("StubInt", value=5),
        "4": node("StubOutput", value=["3", 0]),
    }
    result = validate_prompt(prompt, stubs.STUB_NODES)
    assert result.ok and result.outputs == ["4"]
    assert result.node_errors["1"]["dependent_outputs"] == ["2"]
    only = validate_prompt(prompt, stubs.STUB_NODES, targets=["4"])
    assert only.ok and only.node_errors == {}


def test_deep_chain_does_not_recurse():
    prompt = {"0": node("StubInt", value=1)}
    for i in range(1, 3000):
        prompt[str(i)] = node("StubAdd", a=[str(i - 1), 0], b=1)
    prompt["out"] = node("StubOutput", value=["2999", 0])
    assert validate_prompt(prompt, stubs.STUB_NODES).ok


def test_windows_backslashes_in_file_combos_are_accepted_as_posix():
    result = validate_prompt(typed(mode="styles\\fast.safetensors"), stubs.STUB_NODES)
    assert result.ok
    assert result.prompt["2"]["inputs"]["mode"] == "styles/fast.safetensors"
    assert not validate_prompt(typed(mode="styles\\slow.safetensors"), stubs.STUB_NODES).ok
