"""example_workflows/: saved in the format ComfyUI saves (so each drags into the canvas), one per
shipped preset, each converting to PresetLoader → VramProfile → FixedSampler → SaveImage and
running with ``--model <preset>=tiny``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from diffusers_presets.core.host import get_host
from diffusers_presets.core.presets import registry as preset_registry
from diffusers_presets.runner import cli, core_nodes
from diffusers_presets.runner.convert import convert_workflow, widget_layout
from diffusers_presets.runner.engine.schema import node_schema

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "example_workflows"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
PIPELINE = ["PresetLoader", "VramProfile", "FixedSampler", "SaveImage"]
NODE_KEYS = {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties", "widgets_values"}
TOP_KEYS = {"id", "revision", "last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"}
# What ComfyUI's frontend shows for each node type (NODE_DISPLAY_NAME_MAPPINGS), written out here
# so that a wrong mapping or a converter that drops titles fails this test.
DISPLAY_NAMES = {
    "PresetLoader": "Preset Loader (Diffusers)",
    "VramProfile": "VRAM Profile (Diffusers)",
    "FixedSampler": "Fixed Sampler (Diffusers)",
    "SaveImage": "Save Image",
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def preset_of(workflow: dict) -> str:
    return next(n for n in workflow["nodes"] if n["type"] == "PresetLoader")["widgets_values"][0]


# The text-to-image example of each preset (other examples, e.g. Redux, have their own tests).
PRESET_EXAMPLES = [p for p in EXAMPLES if [n["type"] for n in load(p)["nodes"]] == PIPELINE]


def test_one_example_per_shipped_preset():
    shipped = {p.id for p in preset_registry().all() if not p.id.startswith("demo/")}
    assert shipped and shipped <= {preset_of(load(p)) for p in PRESET_EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_in_comfyui_saved_format(path):
    workflow = load(path)
    assert set(workflow) == TOP_KEYS and workflow["version"] == 0.4
    assert workflow["last_node_id"] == max(n["id"] for n in workflow["nodes"])
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    registry = core_nodes.node_registry()
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        assert set(node) == NODE_KEYS
        assert node["properties"]["Node name for S&R"] == node["type"]
        if node["type"] in registry:
            layout = widget_layout(node_schema(registry[node["type"]]))
            assert len(node["widgets_values"]) == len(layout), node["type"]
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        assert link_id in nodes[origin]["outputs"][origin_slot]["links"]
        assert nodes[origin]["outputs"][origin_slot]["type"] == kind
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
    assert sorted(n["order"] for n in workflow["nodes"]) == list(range(len(workflow["nodes"])))


@pytest.mark.parametrize("path", PRESET_EXAMPLES, ids=lambda p: p.stem)
def test_example_converts_to_the_expected_prompt(path):
    workflow = load(path)
    widgets = {n["id"]: n["widgets_values"] for n in workflow["nodes"]}
    prompt = convert_workflow(workflow, core_nodes.node_registry(), core_nodes.display_names())
    # widgets by the schema rules: seed is followed by its control_after_generate slot
    positive, negative, seed, _control, width, height, batch = widgets[3]
    # The examples save no titles (NODE_KEYS), so each node shows its type's display name.
    titles = {n["id"]: DISPLAY_NAMES[n["type"]] for n in workflow["nodes"]}
    assert prompt == {
        "1": {"inputs": {"preset": widgets[1][0], "model_override": widgets[1][1]}, "class_type": "PresetLoader",
              "_meta": {"title": titles[1]}},
        "2": {"inputs": {"pipeline": ["1", 0], "profile": widgets[2][0]}, "class_type": "VramProfile",
              "_meta": {"title": titles[2]}},
        "3": {"inputs": {"pipeline": ["2", 0], "prompt": positive, "negative_prompt": negative, "seed": seed,
                         "width": width, "height": height, "batch_size": batch},
              "class_type": "FixedSampler", "_meta": {"title": titles[3]}},
        "4": {"inputs": {"images": ["3", 0], "filename_prefix": widgets[4][0]}, "class_type": "SaveImage",
              "_meta": {"title": titles[4]}},
    }


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = get_host()
    saved = dict(host.model_overrides)
    yield tmp_path
    host.model_overrides.clear()
    host.model_overrides.update(saved)
    core_nodes.set_directories(Path.cwd() / "output", Path.cwd() / "input", Path.cwd() / "temp")


@pytest.mark.parametrize("path", PRESET_EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_tiny_weights(path, workdir, capsys):
    preset = preset_of(load(path))
    code = cli.main([str(path), "--model", f"{preset}=tiny", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (item,) = json.loads(out)["outputs"]["4"]["files"]
    saved = workdir / "output" / item["subfolder"] / item["filename"]
    assert Image.open(saved).size == (64, 64)  # width/height 0 = the preset's size, 64 px on tiny weights
    assert json.loads(Image.open(saved).text["workflow"]) == load(path)


def test_png_run_again_gives_the_same_prompt_and_pixels(workdir, capsys):
    path = EXAMPLES_DIR / "zimage-turbo.json"
    assert cli.main([str(path), "--model", "zimage/turbo=tiny", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)["outputs"]["4"]["files"]
    first = workdir / "output" / item["subfolder"] / item["filename"]
    assert cli.main([str(first), "--model", "zimage/turbo=tiny", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)["outputs"]["4"]["files"]
    second = workdir / "output" / item["subfolder"] / item["filename"]
    assert first != second
    assert json.loads(Image.open(second).text["prompt"]) == json.loads(Image.open(first).text["prompt"])
    assert list(Image.open(second).getdata()) == list(Image.open(first).getdata())
