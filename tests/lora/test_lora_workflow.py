"""The CivitaiLoraLoader example workflow (PresetLoader -> CivitaiLoraLoader by AIR ->
FixedSampler -> SaveImage) run headless against the fake Civitai with a tiny SDXL LoRA."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from diffusers_presets.runner import cli
from tests.fake_civitai import KEY, Faults

# The AIR the example workflow names (the example), served by the fake Civitai.
MODEL, VERSION = 328553, 368189

EXAMPLE = Path(__file__).resolve().parents[2] / "example_workflows" / "civitai-lora.json"


def test_example_workflow_downloads_applies_and_records_the_lora(civitai_env, tiny_loras, tmp_path, monkeypatch,
                                                                  capsys, caplog) -> None:
    civitai_env.add_lora(MODEL, VERSION, tiny_loras["sdxl"][0].read_bytes(), base_model="SDXL 1.0",
                         trained_words=["tiny style"], faults=Faults(require_key=True))
    monkeypatch.setenv("CIVITAI_API_KEY", KEY)
    monkeypatch.setenv("MODEL_BASE_PATH", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    caplog.set_level("DEBUG")
    assert cli.main([str(EXAMPLE), "--model", "sdxl/illustrious=tiny", "--json"]) == 0
    out = capsys.readouterr().out
    (item,) = json.loads(out)["outputs"]["4"]["files"]
    png = Image.open(tmp_path / "output" / item["subfolder"] / item["filename"])
    assert png.size == (64, 64)
    text = json.dumps(png.text)
    assert f"urn:air:sdxl:lora:civitai:{MODEL}@{VERSION}" in text  # provenance
    assert KEY not in text and KEY not in out and KEY not in caplog.text
    assert civitai_env.key_leaks() == [] and civitai_env.downloads == {VERSION: 1}
