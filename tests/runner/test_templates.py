"""The 172 UI workflow templates ComfyUI ships in comfyui-workflow-templates 0.1.95 (written by
ComfyUI, not by us) load without a traceback; those using nodes the runner lacks fail
validation cleanly, naming the missing types. For the 50 whose conversion by ComfyUI's own
frontend is in tests/data/golden-conversion, the converter, given the same node schemas, must
produce the same prompt (node ids, class types, declared inputs' values and links)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffusers_presets.runner import cli, core_nodes
from diffusers_presets.runner.convert import convert_workflow
from diffusers_presets.runner.engine import validate_prompt
from golden import GOLDEN_DIR, GOLDEN_FILES, golden_differences

templates = pytest.importorskip("comfyui_workflow_templates")
TEMPLATE_DIR = Path(templates.__file__).parent / "templates"
FILES = sorted(p for p in TEMPLATE_DIR.glob("*.json") if not p.name.startswith("index"))


def test_all_172_templates_are_there():
    assert len(FILES) == 172
    assert {p.name for p in GOLDEN_FILES} <= {p.name for p in FILES}


@pytest.fixture(scope="module")
def registry():
    return core_nodes.node_registry()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_template_converts_and_validates_cleanly(path, registry):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    golden = GOLDEN_DIR / path.name
    if golden.is_file():
        assert golden_differences(golden, workflow) == []
    prompt = convert_workflow(workflow, registry, core_nodes.display_names())
    result = validate_prompt(prompt, registry)
    if result.ok:
        return
    assert result.error["type"] in ("missing_node_type", "prompt_no_outputs", "prompt_outputs_failed_validation")
    for node_id, entry in result.node_errors.items():
        for error in entry["errors"]:
            if error["type"] == "missing_node_type":
                assert error["extra_info"]["class_type"] == prompt[node_id]["class_type"]
                assert error["extra_info"]["class_type"] not in registry


def test_cli_reports_a_template_cleanly(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main([str(TEMPLATE_DIR / "default.json")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "'KSampler' is a ComfyUI core node" in err
