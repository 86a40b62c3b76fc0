"""UI → API conversion. Each expected prompt below is written from the frontend's rules
(contract §5), not produced by running the converter."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.runner import core_nodes
from diffusers_presets.runner.convert import convert_workflow, format_date, resolve_dynamic_prompt

import engine_stubs as stubs


class ComboControl:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "choice": (["a", "b", "c"], {"control_after_generate": True}),
                "count": ("INT", {"default": 4}),
            },
            "optional": {"note": ("STRING", {"default": "n"})},
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"


class Forced:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "first": ("INT", {"default": 1}),
                "forced": ("INT", {"forceInput": True}),
                "last": ("STRING", {"default": "z"}),
                "text": ("STRING", {"dynamicPrompts": True, "default": ""}),
            }
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"


class Saver:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"


class RemoteCombo:
    """Like ComfyUI's LoadImageOutput: a COMBO whose options the frontend fetches (no list)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("COMBO", {"image_upload": True, "remote": {"route": "/internal/files/output", "refresh_button": True}}),
                "count": ("INT", {"default": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"


REGISTRY = {
    **stubs.STUB_NODES, **core_nodes.NODE_CLASS_MAPPINGS,
    "ComboControl": ComboControl, "Forced": Forced, "Saver": Saver, "RemoteCombo": RemoteCombo,
}


def ui_node(node_id, type_, widgets=None, inputs=(), outputs=(), mode=0, **extra):
    node = {
        "id": node_id,
        "type": type_,
        "pos": [0, 0],
        "size": [200, 100],
        "flags": {},
        "order": 0,
        "mode": mode,
        "inputs": [dict(i) for i in inputs],
        "outputs": [dict(o) for o in outputs],
        "properties": {"Node name for S&R": type_},
    }
    if widgets is not None:
        node["widgets_values"] = widgets
    node.update(extra)
    return node


def inp(name, type_, link=None, **extra):
    return {"name": name, "type": type_, "link": link, **extra}


def out(name, type_, links=()):
    return {"name": name, "type": type_, "links": list(links)}


def workflow(nodes, links, **extra):
    return {"last_node_id": 99, "last_link_id": 99, "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4, **extra}


def convert(wf, **kwargs):
    return convert_workflow(wf, REGISTRY, core_nodes.NODE_DISPLAY_NAME_MAPPINGS, **kwargs)


def test_widgets_required_then_optional_and_seed_control_slot():
    wf = workflow(
        [
            ui_node(1, "StubImage", [], outputs=[out("IMAGE", "IMAGE", [1])]),
            # StubTyped: text, ratio, flag, mode (required widgets), image (socket), extra (optional)
            ui_node(2, "StubTyped", ["hi", 0.25, True, "slow", 9], inputs=[inp("image", "IMAGE", 1)], title="Typed"),
            # seed (unflagged INT named seed: + control slot), value
            ui_node(3, "StubSeeded", [42, "randomize", 7]),
        ],
        [[1, 1, 0, 2, 0, "IMAGE"]],
    )
    assert convert(wf) == {
        "1": {"inputs": {}, "class_type": "StubImage", "_meta": {"title": "StubImage"}},
        "2": {
            "inputs": {"text": "hi", "ratio": 0.25, "flag": True, "mode": "slow", "extra": 9, "image": ["1", 0]},
            "class_type": "StubTyped",
            "_meta": {"title": "Typed"},
        },
        "3": {"inputs": {"seed": 42, "value": 7}, "class_type": "StubSeeded", "_meta": {"title": "StubSeeded"}},
    }


def test_old_boolean_control_slot():
    wf = workflow([ui_node(1, "StubSeeded", [42, True, 7])], [])
    assert convert(wf)["1"]["inputs"] == {"seed": 42, "value": 7}


def test_combo_control_takes_two_slots_and_defaults_fill_missing_values():
    wf = workflow([ui_node(1, "ComboControl", ["b", "increment", "", 12])], [])
    assert convert(wf)["1"]["inputs"] == {"choice": "b", "count": 12, "note": "n"}


def test_upload_slot_and_primitive_control():
    wf = workflow(
        [ui_node(1, "LoadImage", ["red.png", "image"]), ui_node(2, "PrimitiveInt", [5, "fixed"])],
        [],
    )
    prompt = convert(wf)
    assert prompt["1"]["inputs"] == {"image": "red.png"}
    assert prompt["1"]["_meta"] == {"title": "Load Image"}
    assert prompt["2"]["inputs"] == {"value": 5}


def test_remote_combo_is_a_widget_followed_by_its_toggle_refresh_and_upload_slots():
    # value, auto-refresh toggle, refresh button, upload button (frontend useComboWidget + useRemoteWidget)
    wf = workflow([ui_node(1, "RemoteCombo", ["shot_00001_.png [output]", False, "refresh", "image", 7])], [])
    assert convert(wf)["1"]["inputs"] == {"image": "shot_00001_.png [output]", "count": 7}
    older = workflow([ui_node(1, "RemoteCombo", ["shot.png", "refresh", "image", 7])], [])  # before the toggle
    assert convert(older)["1"]["inputs"] == {"image": "shot.png", "count": 7}


def test_object_form_widgets_values():
    wf = workflow([ui_node(1, "StubSeeded", {"seed": 3, "value": 4, "bogus": 1})], [])
    assert convert(wf)["1"]["inputs"] == {"seed": 3, "value": 4}


def test_force_input_has_no_slot_but_old_files_keep_one():
    new = workflow([ui_node(1, "Forced", [2, "y", "t"])], [])
    assert convert(new)["1"]["inputs"] == {"first": 2, "last": "y", "text": "t"}
    old = workflow([ui_node(1, "Forced", [2, 0, "y", "t"])], [])
    assert convert(old)["1"]["inputs"] == {"first": 2, "last": "y", "text": "t"}


def test_list_values_are_wrapped():
    wf = workflow([ui_node(1, "StubTyped", [["a", "b"], 0.5, False, "fast", 1])], [])
    assert convert(wf)["1"]["inputs"]["text"] == {"__value__": ["a", "b"]}


def _chain(middle_mode=0, middle_type="StubAdd", middle_inputs=None):
    # 1 StubInt -> 2 (middle) -> 3 StubOutput; node 2 also has a widget b
    middle_inputs = middle_inputs or [inp("a", "INT", 1)]
    return workflow(
        [
            ui_node(1, "StubInt", [1], outputs=[out("INT", "INT", [1])]),
            ui_node(2, middle_type, [0, 5] if middle_type == "StubAdd" else None, inputs=middle_inputs,
                    outputs=[out("INT", "INT", [2])], mode=middle_mode),
            ui_node(3, "StubOutput", [], inputs=[inp("value", "*", 2)]),
        ],
        [[1, 1, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "INT"]],
    )


def test_links_are_string_ids():
    prompt = convert(_chain())
    assert prompt["2"]["inputs"] == {"a": ["1", 0], "b": 5}
    assert prompt["3"]["inputs"] == {"value": ["2", 0]}


def test_reroute_is_followed():
    prompt = convert(_chain(middle_type="Reroute", middle_inputs=[inp("", "*", 1)]))
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"] == {"value": ["1", 0]}


def test_bypassed_node_passes_its_matching_input_through():
    prompt = convert(_chain(middle_mode=4))
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"] == {"value": ["1", 0]}


def test_muted_node_disappears_with_its_links():
    prompt = convert(_chain(middle_mode=2))
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"] == {}


def test_bypass_prefers_first_input_of_the_output_type():
    wf = workflow(
        [
            ui_node(1, "StubImage", [], outputs=[out("IMAGE", "IMAGE", [1])]),
            ui_node(2, "StubInt", [3], outputs=[out("INT", "INT", [2])]),
            # a bypassed node with inputs (INT, IMAGE) and an IMAGE output: slot 0 is INT, so the
            # first IMAGE input (slot 1) passes through
            ui_node(4, "Bypassed", None, inputs=[inp("n", "INT", 2), inp("img", "IMAGE", 1)],
                    outputs=[out("IMAGE", "IMAGE", [3])], mode=4),
            ui_node(5, "Saver", ["x"], inputs=[inp("images", "IMAGE", 3)]),
        ],
        [[1, 1, 0, 4, 1, "IMAGE"], [2, 2, 0, 4, 0, "INT"], [3, 4, 0, 5, 0, "IMAGE"]],
    )
    assert convert(wf)["5"]["inputs"] == {"filename_prefix": "x", "images": ["1", 0]}


def test_primitive_node_and_notes():
    wf = workflow(
        [
            ui_node(1, "PrimitiveNode", [77, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [1], "widget": {"name": "value"}}]),
            ui_node(2, "StubInt", [1], inputs=[inp("value", "INT", 1, widget={"name": "value"})]),
            ui_node(3, "Note", ["some text"]),
            ui_node(4, "MarkdownNote", ["# md"]),
        ],
        [[1, 1, 0, 2, 0, "INT"]],
    )
    assert convert(wf) == {"2": {"inputs": {"value": 77}, "class_type": "StubInt", "_meta": {"title": "StubInt"}}}


def test_unknown_node_types_are_kept_for_validation():
    wf = workflow([ui_node(1, "KSampler", [1, "fixed", 20, 8, "euler", "normal", 1])], [])
    assert convert(wf)["1"]["class_type"] == "KSampler"


def test_version_1_links_and_subgraphs():
    subgraph_id = "11111111-2222-3333-4444-555555555555"
    definition = {
        "id": subgraph_id,
        "name": "Adder",
        "inputs": [{"id": "i0", "name": "a", "type": "INT", "linkIds": [10]}],
        "outputs": [{"id": "o0", "name": "INT", "type": "INT", "linkIds": [11]}],
        "widgets": [],
        "nodes": [
            ui_node(1, "StubAdd", [0, 3], inputs=[inp("a", "INT", 10)], outputs=[out("INT", "INT", [11])]),
        ],
        "links": [
            {"id": 10, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "INT"},
            {"id": 11, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "INT"},
        ],
    }
    wf = {
        "version": 1,
        "state": {"lastNodeId": 9, "lastLinkId": 2, "lastGroupId": 0, "lastRerouteId": 0},
        "nodes": [
            ui_node(7, "StubInt", [2], outputs=[out("INT", "INT", [1])]),
            ui_node(8, subgraph_id, [], inputs=[inp("a", "INT", 1)], outputs=[out("INT", "INT", [2])]),
            ui_node(9, "StubOutput", [], inputs=[inp("value", "*", 2)]),
        ],
        "links": [
            {"id": 1, "origin_id": 7, "origin_slot": 0, "target_id": 8, "target_slot": 0, "type": "INT"},
            {"id": 2, "origin_id": 8, "origin_slot": 0, "target_id": 9, "target_slot": 0, "type": "INT"},
        ],
        "definitions": {"subgraphs": [definition]},
        "extra": {},
    }
    assert convert(wf) == {
        "7": {"inputs": {"value": 2}, "class_type": "StubInt", "_meta": {"title": "StubInt"}},
        "8:1": {"inputs": {"a": ["7", 0], "b": 3}, "class_type": "StubAdd", "_meta": {"title": "StubAdd"}},
        "9": {"inputs": {"value": ["8:1", 0]}, "class_type": "StubOutput", "_meta": {"title": "StubOutput"}},
    }


SEEDED_ID = "aaaaaaaa-0000-0000-0000-000000000001"
OUTER_ID = "aaaaaaaa-0000-0000-0000-000000000002"


def _seeded_subgraph():
    """A subgraph around StubSeeded whose inputs `seed` and `value` are both widgets."""
    return {
        "id": SEEDED_ID,
        "name": "Seeded",
        "inputs": [
            {"id": "i0", "name": "seed", "type": "INT", "linkIds": [20]},
            {"id": "i1", "name": "value", "type": "INT", "linkIds": [21]},
        ],
        "outputs": [{"id": "o0", "name": "INT", "type": "INT", "linkIds": [22]}],
        "widgets": [],
        "nodes": [
            ui_node(1, "StubSeeded", [0, "fixed", 0],
                    inputs=[inp("seed", "INT", 20, widget={"name": "seed"}), inp("value", "INT", 21, widget={"name": "value"})],
                    outputs=[out("INT", "INT", [22])]),
        ],
        "links": [
            {"id": 20, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "INT"},
            {"id": 21, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1, "type": "INT"},
            {"id": 22, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "INT"},
        ],
    }


def test_subgraph_instance_widget_values_fill_its_unlinked_widget_inputs():
    # The saved instance lists only its linked widget input (`value`, slot 0 of its inputs);
    # `seed` (subgraph input 0) is left out and takes the instance's widgets_values[0]. Taking
    # the same slot index instead would feed `seed` the link meant for `value`.
    wf = {
        "version": 1,
        "nodes": [
            ui_node(7, "StubInt", [5], outputs=[out("INT", "INT", [1])]),
            ui_node(8, SEEDED_ID, [42, 3], inputs=[inp("value", "INT", 1, widget={"name": "value"})],
                    outputs=[out("INT", "INT", [2])]),
            ui_node(9, "StubOutput", [], inputs=[inp("value", "*", 2)]),
        ],
        "links": [
            {"id": 1, "origin_id": 7, "origin_slot": 0, "target_id": 8, "target_slot": 0, "type": "INT"},
            {"id": 2, "origin_id": 8, "origin_slot": 0, "target_id": 9, "target_slot": 0, "type": "INT"},
        ],
        "definitions": {"subgraphs": [_seeded_subgraph()]},
        "extra": {},
    }
    assert convert(wf)["8:1"]["inputs"] == {"seed": 42, "value": ["7", 0]}
    # An input listed but unlinked takes the widget value too.
    wf["nodes"][1]["inputs"] = [inp("seed", "INT", None, widget={"name": "seed"}), inp("value", "INT", 1, widget={"name": "value"})]
    assert convert(wf)["8:1"]["inputs"] == {"seed": 42, "value": ["7", 0]}


def test_widgets_promoted_through_nested_subgraphs():
    # Outer subgraph: input `seed` → the inner Seeded instance's `seed` widget input. The root
    # instance's widgets_values [99] is the seed; `value` comes from the inner instance's own values.
    outer = {
        "id": OUTER_ID,
        "name": "Outer",
        "inputs": [{"id": "j0", "name": "seed", "type": "INT", "linkIds": [30]}],
        "outputs": [{"id": "p0", "name": "INT", "type": "INT", "linkIds": [31]}],
        "widgets": [],
        "nodes": [
            ui_node(5, SEEDED_ID, [1, 2], inputs=[inp("seed", "INT", 30, widget={"name": "seed"})], outputs=[out("INT", "INT", [31])]),
        ],
        "links": [
            {"id": 30, "origin_id": -10, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "INT"},
            {"id": 31, "origin_id": 5, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "INT"},
        ],
    }
    wf = {
        "version": 1,
        "nodes": [
            ui_node(10, OUTER_ID, [99], outputs=[out("INT", "INT", [1])]),
            ui_node(11, "StubOutput", [], inputs=[inp("value", "*", 1)]),
        ],
        "links": [{"id": 1, "origin_id": 10, "origin_slot": 0, "target_id": 11, "target_slot": 0, "type": "INT"}],
        "definitions": {"subgraphs": [outer, _seeded_subgraph()]},
        "extra": {},
    }
    prompt = convert(wf)
    assert prompt["10:5:1"]["inputs"] == {"seed": 99, "value": 2}
    assert prompt["11"]["inputs"] == {"value": ["10:5:1", 0]}


def test_legacy_group_node():
    wf = workflow(
        [
            ui_node(1, "StubInt", [4], outputs=[out("INT", "INT", [1])]),
            # group "Pair" = [0] StubAdd(a <- outer input, b widget) -> [1] StubAdd(a <- [0], b widget)
            ui_node(2, "workflow>Pair", [0, 10, 0, 100], inputs=[inp("a", "INT", 1)], outputs=[out("INT", "INT", []), out("INT", "INT", [2])]),
            ui_node(3, "StubOutput", [], inputs=[inp("value", "*", 2)]),
        ],
        [[1, 1, 0, 2, 0, "INT"], [2, 2, 1, 3, 0, "INT"]],
    )
    wf["extra"]["groupNodes"] = {
        "Pair": {
            "nodes": [
                {"type": "StubAdd", "index": 0, "inputs": [{"name": "a", "type": "INT", "link": None}], "outputs": [{"name": "INT", "type": "INT", "links": []}], "widgets_values": [0, 1]},
                {"type": "StubAdd", "index": 1, "inputs": [{"name": "a", "type": "INT", "link": None}], "outputs": [{"name": "INT", "type": "INT", "links": []}], "widgets_values": [0, 2]},
            ],
            "links": [[0, 0, 1, 0, 1, "INT"]],
            "external": [[1, 0, "INT"]],
        }
    }
    assert convert(wf) == {
        "1": {"inputs": {"value": 4}, "class_type": "StubInt", "_meta": {"title": "StubInt"}},
        "2:0": {"inputs": {"a": ["1", 0], "b": 10}, "class_type": "StubAdd", "_meta": {"title": "StubAdd"}},
        "2:1": {"inputs": {"a": ["2:0", 0], "b": 100}, "class_type": "StubAdd", "_meta": {"title": "StubAdd"}},
        "3": {"inputs": {"value": ["2:1", 0]}, "class_type": "StubOutput", "_meta": {"title": "StubOutput"}},
    }


def test_dynamic_prompts():
    rng = random.Random(0)
    for _ in range(20):
        assert resolve_dynamic_prompt("a {red|green|{blue|cyan}} hat", rng) in {
            "a red hat", "a green hat", "a blue hat", "a cyan hat"
        }
    assert resolve_dynamic_prompt("keep \\{this\\|that\\} /* gone */ ok // gone too", rng) == "keep {this|that}  ok "
    wf = workflow([ui_node(1, "Forced", [1, "{x|x}", "{only}"])], [])
    # `last` has no dynamicPrompts flag: left alone; `text` has it
    assert convert(wf, rng=rng)["1"]["inputs"] == {"first": 1, "last": "{x|x}", "text": "only"}


def test_filename_prefix_replacements():
    now = datetime(2024, 3, 7, 9, 5, 2)
    assert format_date("yyyy-MM-dd hh:mm:ss", now) == "2024-03-07 09:05:02"
    assert format_date("yy.M.d h-m-s yyy", now) == "24.3.7 9-5-2 yyy"
    wf = workflow(
        [
            ui_node(1, "StubSeeded", [123, "fixed", 1], title="Sampler"),
            ui_node(2, "Saver", ["out/%date:yyyy-MM-dd%/%Sampler.seed%_%StubSeeded.value%_%width%_%date:yyyy.MM%"]),
        ],
        [],
    )
    prompt = convert(wf, now=now)
    assert prompt["2"]["inputs"]["filename_prefix"] == "out/2024-03-07/123_1_%width%_%date:yyyy.MM%"


@pytest.mark.parametrize("bad", [{"nodes": "x"}, {"nodes": [{"type": "StubInt"}], "links": []}, {"nodes": [], "links": "x"}, []])
def test_malformed_ui_workflow(bad):
    with pytest.raises(PresetsError) as info:
        convert(bad)
    assert info.value.code == "workflow_invalid"
