"""The converter against ComfyUI's own frontend: tests/data/golden-conversion holds what the
frontend's ``graphToPrompt`` produced for 50 of ComfyUI's workflow templates. The per-template
comparison runs in test_templates.py; this checks the data and that the comparison bites."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from golden import GOLDEN_DIR, GOLDEN_FILES, differences, golden_differences, golden_registry

templates = pytest.importorskip("comfyui_workflow_templates")
TEMPLATE_DIR = Path(templates.__file__).parent / "templates"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_fifty_goldens_each_with_its_template_and_schemas():
    assert len(GOLDEN_FILES) == 50
    registry = golden_registry()
    for golden in GOLDEN_FILES:
        assert (TEMPLATE_DIR / golden.name).is_file(), golden.name
        for node in load(golden).values():
            assert node["class_type"] in registry


def test_default_template_matches_and_a_wrong_value_or_link_is_caught():
    workflow = load(TEMPLATE_DIR / "default.json")
    assert golden_differences(GOLDEN_DIR / "default.json", workflow) == []
    changed = copy.deepcopy(workflow)
    sampler = next(n for n in changed["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][2] = 21  # steps
    assert golden_differences(GOLDEN_DIR / "default.json", changed) == [
        "node 3 KSampler.steps: frontend 20, ours 21"
    ]


def test_comparison_covers_ids_class_types_links_and_booleans():
    registry = golden_registry()
    expected = load(GOLDEN_DIR / "default.json")
    assert differences(expected, copy.deepcopy(expected), registry) == []
    actual = copy.deepcopy(expected)
    del actual["9"]
    actual["8"]["inputs"]["vae"] = ["4", 1]
    actual["5"]["class_type"] = "EmptySD3LatentImage"
    actual["3"]["inputs"]["denoise"] = True  # == 1 in Python, not the frontend's 1
    actual["3"]["inputs"]["undeclared"] = "ignored"
    assert differences(expected, actual, registry) == [
        "node ids: missing ['9'], extra []",
        "node 3 KSampler.denoise: frontend 1, ours true",
        "node 5: class_type 'EmptyLatentImage', ours 'EmptySD3LatentImage'",
        'node 8 VAEDecode.vae: frontend ["4", 2], ours ["4", 1]',
    ]
