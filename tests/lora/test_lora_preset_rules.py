"""What the preset and the loader decide before any weights load: a LoRA for another family is
refused from Civitai's metadata without downloading it, the preset's ``lineage:`` field (not its
file name) drives the lineage warnings, and a catalog entry's strength is used only when asked."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.lora.stack import lora_spec
from diffusers_presets.core.presets import PresetRegistry, registry
from diffusers_presets.nodes.lora_loader import CivitaiLoraLoader
from tests.lora.helpers import handle_for


def lora_bytes(prefix: str) -> bytes:
    """A small LoRA whose key names say its family (``lora_te2_`` = SDXL, ``double_blocks`` = Flux)."""
    return save({f"{prefix}.lora_down.weight": np.zeros((4, 8), dtype=np.float32),
                 f"{prefix}.lora_up.weight": np.zeros((8, 4), dtype=np.float32)})


def test_civitai_metadata_of_another_family_is_refused_without_downloading(civitai_env, host) -> None:
    civitai_env.add_lora(31, 310, lora_bytes("double_blocks_0_img_attn_qkv"), base_model="Flux.1 D")
    with pytest.raises(PresetsError) as info:
        lora_spec(registry().get("sdxl/illustrious"), "31@310")
    assert info.value.code == "lora_incompatible" and "Flux.1" in info.value.message
    assert civitai_env.downloads == {} and civitai_env.storage_bytes == 0
    assert not (host.models_dir() / "loras").exists() or not any((host.models_dir() / "loras").iterdir())


def test_without_usable_metadata_the_file_is_downloaded_and_its_header_decides(civitai_env, host) -> None:
    civitai_env.add_lora(32, 320, lora_bytes("double_blocks_0_img_attn_qkv"), base_model="Other")
    with pytest.raises(PresetsError) as info:
        lora_spec(registry().get("sdxl/illustrious"), "32@320")
    assert info.value.code == "lora_incompatible" and "safetensors header" in info.value.message
    assert civitai_env.downloads == {320: 1}


def user_preset(folder, name: str, body: str) -> None:
    (folder / "sdxl").mkdir(parents=True, exist_ok=True)
    (folder / "sdxl" / f"{name}.yaml").write_text("source: {tiny: true}\nsteps: 4\ncfg: 5.0\n" + body)


def test_lineage_comes_from_the_preset_field(civitai_env, host, tmp_path, monkeypatch, caplog) -> None:
    user = tmp_path / "presets"
    user_preset(user, "mine", "lineage: pony\n")
    user_preset(user, "pony", "")  # named like a lineage, but says none
    monkeypatch.setenv("PRESETS_DIR", str(user))
    assert registry().get("sdxl/mine").lineage == "pony" and registry().get("sdxl/pony").lineage is None
    assert registry().get("sdxl/illustrious").lineage == "illustrious"
    assert registry().get("demo/sdxl").lineage == "illustrious"  # inherited through extends
    civitai_env.add_lora(33, 330, lora_bytes("lora_te2_text_model_encoder_layers_0_mlp_fc1"),
                         base_model="Illustrious")
    lora_spec(registry().get("sdxl/mine"), "33@330")
    assert "trained on Illustrious and is applied to a Pony model" in caplog.text
    caplog.clear()
    lora_spec(registry().get("sdxl/pony"), "33@330")
    lora_spec(registry().get("sdxl/illustrious"), "33@330")
    assert "trained on" not in caplog.text


@pytest.mark.parametrize("body, family", [("lineage: sd15\n", "sdxl"), ("lineage: flux-dev\n", "sdxl"),
                                          ("lineage: 3\n", "sdxl")])
def test_a_wrong_lineage_is_a_preset_error(tmp_path, body, family) -> None:
    user_preset(tmp_path, "bad", body)
    with pytest.raises(PresetsError) as info:
        PresetRegistry(user_dir=tmp_path)
    assert info.value.code == "preset_invalid" and "lineage" in info.value.message
    assert "bad.yaml" in info.value.message and "illustrious" in info.value.message


def test_catalog_strength_is_an_explicit_choice(host, tiny_loras, fresh_cache, tmp_path, monkeypatch) -> None:
    user = tmp_path / "user-presets"
    user.mkdir()
    target = host.models_dir() / "loras" / "cat.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(tiny_loras["sdxl"][0].read_bytes())
    (user / "loras.yaml").write_text("loras:\n  - label: Cat\n    base_architecture: sdxl\n    theme: style\n"
                                     "    path: cat.safetensors\n    settings: {strength: 0.6}\n")
    monkeypatch.setenv("PRESETS_DIR", str(user))
    optional = CivitaiLoraLoader.INPUT_TYPES()["optional"]
    assert list(optional)[-1] == "use_catalog_strength" and optional["use_catalog_strength"][1]["default"] is True
    base, loader = handle_for("sdxl"), CivitaiLoraLoader()
    node_strength = loader.load(base, "style / Cat [sdxl]", "", 1.0, 0.5, "", use_catalog_strength=False)[0]
    assert node_strength.loras[0].weight == 1.0
    catalog_strength = loader.load(base, "style / Cat [sdxl]", "", 1.0, 0.5, "", use_catalog_strength=True)[0]
    assert catalog_strength.loras[0].weight == 0.6
    assert loader.load(base, "style / Cat [sdxl]", "", 1.3, 0.5)[0].loras[0].weight == 0.6  # an old workflow
    # a reference is not a catalog entry: the node's strength, whatever the switch says
    assert loader.load(base, "(use the reference below)", "cat.safetensors", 0.9, 0.5, "", True)[0].loras[0].weight == 0.9
