"""`python -m runner sync`: missing presets, model overrides and LoRAs rewritten to what the
machine has (same name, then same family), refused with no change when nothing fits; UI, API
and PNG workflows keep their format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from diffusers_presets.runner.cli import main
from diffusers_presets.runner.sync import rewrite_png
from diffusers_presets.runner.workflow_io import read_workflow
from tests.local_models import AIR, build_machine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def machine(host, tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    from huggingface_hub import constants

    paths = build_machine(tmp_path, tiny_models)
    host.models_root = paths["models"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))  # no shipped weights here
    presets = tmp_path / "presets"
    (presets / "sdxl").mkdir(parents=True)
    (presets / "sdxl" / "anime.yaml").write_text("extends: demo/sdxl\n")  # tiny weights: present
    monkeypatch.setenv("PRESETS_DIR", str(presets))
    return paths


def api(preset: str, override: str = "", reference: str = "", lora: str = "(use the reference below)") -> dict:
    return {
        "1": {"class_type": "PresetLoader", "inputs": {"preset": preset, "model_override": override}},
        "2": {"class_type": "CivitaiLoraLoader", "inputs": {"pipeline": ["1", 0], "lora": lora, "reference": reference,
                                                           "strength": 0.8, "trigger_weight": 0.5}},
        "3": {"class_type": "FixedSampler", "inputs": {"pipeline": ["2", 0], "prompt": "a fox", "negative_prompt": "",
                                                      "seed": 1, "width": 64, "height": 64, "batch_size": 1}},
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def sync(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["sync", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_preset_renamed_by_name_and_lora_by_name(machine, tmp_path: Path, capsys) -> None:
    # "pony/anime" does not exist; "sdxl/anime" has the same name. The LoRA moved into a subfolder.
    source = write(tmp_path / "w.json", api("pony/anime", reference="old/sdxl-detail.safetensors"))
    code, out, err = sync(capsys, source)
    assert code == 0, err
    assert "node 1 (PresetLoader) preset: pony/anime → sdxl/anime (by name)" in out
    assert "reference: old/sdxl-detail.safetensors → civitai/sdxl-detail.safetensors (by name)" in out
    written = json.loads(source.read_text())
    assert written["1"]["inputs"]["preset"] == "sdxl/anime"
    assert written["2"]["inputs"]["reference"] == "civitai/sdxl-detail.safetensors"
    assert written["3"] == api("x")["3"]  # untouched nodes stay as they were


def test_family_fallback_for_presets_without_weights_overrides_and_airs(machine, tmp_path: Path, capsys) -> None:
    # flux/dev exists but its weights are not here; the override names a folder that does not exist;
    # the AIR (another model id) was never downloaded.
    source = write(tmp_path / "w.json", api("flux/dev", override="gone/other-flux",
                                            reference="urn:air:flux1:lora:civitai:5@6"))
    code, out, err = sync(capsys, source, "-o", tmp_path / "out.json")
    assert code == 0, err
    written = json.loads((tmp_path / "out.json").read_text())
    # with an override the preset itself is fine: the override is what gets replaced
    assert written["1"]["inputs"] == {"preset": "flux/dev", "model_override": "my-flux"}
    assert written["2"]["inputs"]["reference"] == "flux-style.safetensors"  # the workflow's family: flux
    assert "model_override: gone/other-flux → my-flux (by family)" in out
    assert json.loads(source.read_text()) == api("flux/dev", override="gone/other-flux",
                                                 reference="urn:air:flux1:lora:civitai:5@6")  # -o: input kept


def test_preset_without_weights_moves_to_a_present_one_of_its_family(machine, tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "w.json", api("sdxl/illustrious", reference=AIR))
    code, out, err = sync(capsys, source, "--no-by-name")
    assert code == 0, err
    # the present sdxl presets are demo/sdxl and sdxl/anime; neither is the default: alphabetical
    assert json.loads(source.read_text())["1"]["inputs"]["preset"] == "demo/sdxl"
    assert "by family" in out and "reference" not in out  # the AIR's file is in the library: kept


def test_an_air_of_another_version_is_replaced_by_name(machine, tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "w.json", api("demo/sdxl", reference="urn:air:sdxl:lora:civitai:1001@9999"))
    code, out, _ = sync(capsys, source, "--dry-run")
    assert code == 0
    assert f"urn:air:sdxl:lora:civitai:1001@9999 → {AIR} (by name)" in out
    assert "nothing written" in out
    assert "1001@9999" in source.read_text()  # dry run


def test_refusal_changes_nothing(machine, tmp_path: Path, capsys) -> None:
    original = api("flux/gone", reference="missing-style.safetensors")
    source = write(tmp_path / "w.json", original)
    before = source.read_bytes()
    code, out, err = sync(capsys, source, "--no-by-family", "-o", tmp_path / "out.json")
    assert code == 1
    assert "[preset_not_found] node 1 (PresetLoader) preset: preset 'flux/gone' does not exist" in err
    assert "[lora_not_found] node 2 (CivitaiLoraLoader) reference" in err
    assert "Nothing was changed." in err and out == ""
    assert source.read_bytes() == before and not (tmp_path / "out.json").exists()
    # the same workflow with family matching on has candidates for both
    assert sync(capsys, source)[0] == 0


def test_output_into_a_folder_is_a_coded_error(machine, tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "w.json", api("demo/flux", override="my-flux", lora="flux-style.safetensors"))
    for target in (tmp_path, tmp_path / "missing" / "out.json"):
        code, _, err = sync(capsys, source, "-o", target)
        assert code == 2 and err.startswith(f"error: [input_invalid] cannot write the workflow to {target}"), err
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*.part"))  # the temporary file is removed


def test_nothing_to_change(machine, tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "w.json", api("demo/flux", override="my-flux", lora="flux-style.safetensors"))
    before = source.read_bytes()
    code, out, _ = sync(capsys, source)
    assert code == 0 and "Nothing to change" in out
    assert source.read_bytes() == before


def test_ui_workflow_keeps_ui_format(machine, tmp_path: Path, capsys) -> None:
    ui = json.loads((ROOT / "example_workflows" / "civitai-lora.json").read_text())
    source = write(tmp_path / "ui.json", ui)
    code, out, err = sync(capsys, source)
    assert code == 0, err
    written = json.loads(source.read_text())
    nodes = {n["id"]: n for n in written["nodes"]}
    assert nodes[1]["widgets_values"] == ["demo/sdxl", ""]
    assert nodes[2]["widgets_values"][1] == AIR  # family fallback (sdxl); an AIR stays an AIR
    assert nodes[2]["widgets_values"][2:] == [0.8, 0.5, "", True]
    assert written["links"] == ui["links"] and read_workflow(str(source)).ui is not None


def _png(prompt: dict, ui: dict) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps(ui))
    info.add_text("parameters", "kept")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _chunks(data: bytes, kind: bytes) -> list[bytes]:
    import struct

    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == kind:
            found.append(data[pos:pos + 12 + length])
        pos += 12 + length
    return found


def test_png_rewrites_both_chunks_and_keeps_pixels(machine, tmp_path: Path, capsys) -> None:
    ui = json.loads((ROOT / "example_workflows" / "civitai-lora.json").read_text())
    ui["nodes"][0]["widgets_values"][0] = "pony/anime"
    original = _png(api("pony/anime", reference=AIR), ui)
    source = tmp_path / "image.png"
    source.write_bytes(original)
    code, out, err = sync(capsys, source, "-o", tmp_path / "out.png")
    assert code == 0, err
    assert out.count("pony/anime → sdxl/anime") == 1  # the same node in prompt and workflow: one change
    result = (tmp_path / "out.png").read_bytes()
    assert _chunks(result, b"IDAT") == _chunks(original, b"IDAT") and _chunks(result, b"IHDR") == _chunks(original, b"IHDR")
    workflow = read_workflow(str(tmp_path / "out.png"))
    assert workflow.prompt["1"]["inputs"]["preset"] == "sdxl/anime"
    assert next(n for n in workflow.ui["nodes"] if n["id"] == 1)["widgets_values"][0] == "sdxl/anime"
    from PIL import Image

    with Image.open(tmp_path / "out.png") as image:
        assert image.text["parameters"] == "kept" and image.getpixel((3, 3)) == (200, 10, 30)


def test_png_chunk_rewrite_handles_non_latin_text() -> None:
    original = _png({"1": {"class_type": "X", "inputs": {}}}, {"nodes": []})
    rewritten = rewrite_png(original, {"prompt": json.dumps({"1": {"class_type": "X", "inputs": {"t": "狐"}}},
                                                            ensure_ascii=False)})
    from PIL import Image

    with Image.open(io.BytesIO(rewritten)) as image:
        assert json.loads(image.text["prompt"])["1"]["inputs"]["t"] == "狐"
        assert json.loads(image.text["workflow"]) == {"nodes": []}


def test_family_fallback_prefers_real_weights_over_the_tiny_demo(machine, tmp_path: Path, capsys) -> None:
    import os

    presets = Path(os.environ["PRESETS_DIR"])
    (presets / "flux").mkdir()
    (presets / "flux" / "local.yaml").write_text("extends: flux/dev\nsource: {folder: my-flux}\n")
    source = write(tmp_path / "w.json", api("flux/gone"))
    code, out, err = sync(capsys, source)
    assert code == 0, err
    assert "preset: flux/gone → flux/local (by family)" in out  # not demo/flux, also present
