"""The CivitaiLoraLoader example workflow (PresetLoader -> CivitaiLoraLoader by AIR ->
FixedSampler -> SaveImage) run headless against the fake Civitai with a tiny SDXL LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from diffusers_presets.runner import cli, core_nodes
from tests.fake_civitai import KEY, MODEL, VERSION, Faults

EXAMPLE = Path(__file__).with_name("civitai_lora_example.json")


def test_example_workflow_downloads_applies_and_records_the_lora(civitai_env, tiny_loras, tmp_path, monkeypatch,
                                                                  capsys, caplog) -> None:
    if "CivitaiLoraLoader" not in core_nodes.node_registry():
        pytest.skip("CivitaiLoraLoader is not registered in nodes/__init__.py yet")
    civitai_env.add_lora(MODEL, VERSION, tiny_loras["sdxl"][0].read_bytes(), base_model="SDXL 1.0",
                         trained_words=["tiny style"], faults=Faults(require_key=True))
    monkeypatch.setenv("CIVITAI_API_KEY", KEY)
    monkeypatch.setenv("MODEL_BASE_PATH", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    caplog.set_level("DEBUG")
    assert cli.main([str(EXAMPLE), "--json"]) == 0
    out = capsys.readouterr().out
    (item,) = json.loads(out)["outputs"]["4"]["files"]
    png = Image.open(tmp_path / "output" / item["subfolder"] / item["filename"])
    assert png.size == (64, 64)
    text = json.dumps(png.text)
    assert f"urn:air:sdxl:lora:civitai:{MODEL}@{VERSION}" in text  # provenance
    assert KEY not in text and KEY not in out and KEY not in caplog.text
    assert civitai_env.key_leaks() == [] and civitai_env.downloads == {VERSION: 1}
