"""Family detection and compatibility, trigger words and compel, the catalog, provenance."""

from __future__ import annotations

import json

import pytest
import torch

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.handle import LoraSpec
from diffusers_presets.core.lora import catalog as catalog_module
from diffusers_presets.core.lora.compat import (architecture_of_base_model, check_compatible, detect_architecture,
                                               preset_base_model)
from diffusers_presets.core.lora.stack import lora_metadata, preset_lora_specs
from diffusers_presets.core.lora.triggers import clean_triggers, fit_prompt, plan_prompt, sdxl_conditioning
from diffusers_presets.nodes.lora_loader import CivitaiLoraLoader
from tests.fake_civitai import KEY
from tests.lora.conftest import FAMILIES
from tests.lora.helpers import handle_for, render


def save(path, tensors, metadata=None):
    from safetensors.torch import save_file

    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("base, arch", [("Pony", "sdxl"), ("Illustrious", "sdxl"), ("NoobAI", "sdxl"),
                                        ("SDXL 1.0", "sdxl"), ("Flux.1 S", "flux"), ("Chroma", "chroma"),
                                        ("ZImageTurbo", "zimage"), ("Anima", "anima"), ("SD 1.5", "sd1"),
                                        ("Other", None)])
def test_base_models_map_to_families(base, arch) -> None:
    assert architecture_of_base_model(base) == arch


def test_detection_from_the_header(tiny_loras, tmp_path) -> None:
    for family in FAMILIES:
        expected = "flux" if family == "chroma" else family  # same layer names: Chroma counts as Flux-like
        assert detect_architecture(tiny_loras[family][0]) == expected
    kohya = {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
             "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768)}
    assert detect_architecture(save(tmp_path / "sd1.safetensors", kohya)) == "sd1"
    assert detect_architecture(save(tmp_path / "te2.safetensors", {"lora_te2_x.lora_down.weight": (4, 8)})) == "sdxl"
    assert detect_architecture(save(tmp_path / "bfl.safetensors", {"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": (4, 8)})) == "flux"
    assert detect_architecture(save(tmp_path / "spec.safetensors", {"x.lora_A.weight": (4, 8)},
                                    {"modelspec.architecture": "z-image-turbo/lora"})) == "zimage"
    assert detect_architecture(save(tmp_path / "kohya.safetensors", {"x.lora_A.weight": (4, 8)},
                                    {"ss_base_model_version": "sdxl_base_v1-0"})) == "sdxl"
    assert detect_architecture(save(tmp_path / "unknown.safetensors", {"x.lora_A.weight": (4, 8)})) is None
    (tmp_path / "bad.safetensors").write_bytes(b"<html>")
    with pytest.raises(PresetsError) as info:
        detect_architecture(tmp_path / "bad.safetensors")
    assert info.value.code == "lora_invalid"


def test_compatibility_rules(tiny_loras, caplog) -> None:
    assert check_compatible("sdxl", label="x", base_model="Illustrious", preset_base_model="Illustrious") == []
    assert check_compatible("sdxl", label="x", base_model="Pony", preset_base_model="Illustrious")
    assert check_compatible("chroma", label="x", base_model="Flux.1 D")
    with pytest.raises(PresetsError) as info:
        check_compatible("sdxl", label="LoRA x", base_model="SD 1.5")
    assert info.value.code == "lora_incompatible"
    assert "Stable Diffusion 1.x" in info.value.message and "SDXL (sdxl)" in info.value.message
    assert check_compatible("sdxl", label="x", base_model="Other")  # unknown: a warning, then the layer check
    assert preset_base_model("illustrious") == "Illustrious" and preset_base_model("flux-dev") == "Flux.1 D"
    assert preset_base_model(None) == ""


def test_trigger_cleaning_and_fitting(host, tiny_models, fresh_cache) -> None:
    assert clean_triggers([" pixel  art ", "Pixel Art", "", "blue eyes, black hair,"]) == ("pixel art",
                                                                                      "blue eyes, black hair")
    pipe = handle_for("sdxl").pipeline()
    long_prompt = " ".join(f"word{i}" for i in range(200))
    fitted = fit_prompt(pipe, "sdxl", long_prompt, "ohwx style")
    assert fitted.endswith(", ohwx style") and fitted.startswith("word0 word1")
    assert len(pipe.tokenizer(fitted).input_ids) <= 77
    assert fit_prompt(pipe, "sdxl", "a cat", "ohwx") == "a cat, ohwx"


def test_sdxl_trigger_weight_uses_compel(host, tiny_loras, fresh_cache) -> None:
    handle = handle_for("sdxl")
    pipe = handle.pipeline()
    # all weights 1: the embeddings are exactly what the pipeline computes itself
    conditioning = sdxl_conditioning(pipe, [("a red fox (sitting)+,", 1.0), ("ohwx", 1.0)], "blurry")
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt("a red fox (sitting)+, ohwx", device="cpu",
                                                                   negative_prompt="blurry")
    assert torch.allclose(conditioning["prompt_embeds"], embeds, atol=1e-5)
    assert torch.allclose(conditioning["pooled_prompt_embeds"], pooled, atol=1e-5)
    assert torch.allclose(conditioning["negative_prompt_embeds"], negative, atol=1e-5)

    def with_weight(weight: float):
        spec = LoraSpec(adapter_name="dp_x", path=tiny_loras["sdxl"][0], weight=0.0, triggers=("ohwx",),
                        trigger_weight=weight)
        return handle.with_lora(spec)

    half, params = render(with_weight(0.5), prompt="a red fox " * 40)  # long: compel chunks, nothing truncated
    assert params.conditioning is not None and params.conditioning["prompt_embeds"].shape[1] > 77
    assert params.prompt.endswith(", ohwx")
    assert not torch.equal(half, render(with_weight(1.5), prompt="a red fox " * 40)[0])
    plain_plan = plan_prompt(pipe, "sdxl", "a fox", "", with_weight(0.5).loras, clip_skip=2)
    assert plain_plan.conditioning is None and plain_plan.prompt == "a fox, ohwx"


def test_catalog_entries_override_fixed_parameters(host, tiny_loras, fresh_cache, tmp_path, monkeypatch) -> None:
    user = tmp_path / "user-presets"
    user.mkdir()
    target = host.models_dir() / "loras" / "styles" / "cat.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(tiny_loras["sdxl"][0].read_bytes())
    (user / "loras.yaml").write_text(
        "loras:\n"
        "  - label: Cat style\n    base_architecture: Illustrious\n    theme: style\n"
        "    path: styles/cat.safetensors\n    prompt: cat ears, whiskers\n    negative_prompt: dog\n"
        "    settings: {strength: 0.6, guidance_scale: 5.5, clip_skip: 1}\n    notes: test\n")
    monkeypatch.setenv("PRESETS_DIR", str(user))
    choices = CivitaiLoraLoader.INPUT_TYPES()["required"]["lora"][0]
    assert "style / Cat style [sdxl]" in choices and "styles/cat.safetensors" in choices
    assert any(choice.startswith("example / ") for choice in choices)  # the shipped catalog
    handle, words = CivitaiLoraLoader().load(handle_for("sdxl"), "style / Cat style [sdxl]", "", 1.0, 1.0)
    assert words == "cat ears, whiskers"
    spec = handle.loras[0]
    assert (spec.weight, spec.guidance_scale, spec.clip_skip, spec.negative_prompt) == (0.6, 5.5, 1, "dog")
    from diffusers_presets.core.families.base import SamplingParams
    from diffusers_presets.core.lora.stack import prepare_generation

    params = SamplingParams(prompt="a fox", negative_prompt="blurry", steps=2, guidance_scale=7.0, width=64,
                            height=64, batch_size=1, seed=1, clip_skip=None)
    params = prepare_generation(handle.pipeline(), "sdxl", params, handle.loras)
    assert (params.guidance_scale, params.clip_skip) == (5.5, 1)
    assert params.negative_prompt == "blurry, dog" and params.prompt == "a fox, cat ears, whiskers"
    with pytest.raises(PresetsError) as info:
        CivitaiLoraLoader().load(handle_for("flux"), "style / Cat style [sdxl]", "", 1.0, 1.0)
    assert info.value.code == "lora_incompatible"


def test_a_malformed_catalog_names_file_entry_and_field(tmp_path) -> None:
    bad = tmp_path / "loras.yaml"
    bad.write_text("loras:\n  - label: x\n    base_architecture: sd15\n    theme: t\n    air: 1@2\n")
    with pytest.raises(PresetsError) as info:
        catalog_module.read_catalog(bad)
    assert info.value.code == "preset_invalid" and "entry 1" in info.value.message
    assert "base_architecture" in info.value.message
    shipped = catalog_module.read_catalog(catalog_module.SHIPPED_DIR / "loras.yaml")
    assert shipped and all(entry.family in FAMILIES for entry in shipped)


def test_preset_loras_and_provenance_without_the_key(civitai_env, host, tiny_loras, fresh_cache,
                                                     monkeypatch, caplog) -> None:
    from dataclasses import replace

    monkeypatch.setenv("CIVITAI_API_KEY", KEY)
    civitai_env.add_lora(200, 2000, tiny_loras["sdxl"][1].read_bytes(), base_model="Illustrious",
                         trained_words=["ohwx"])
    caplog.set_level("DEBUG")
    preset = replace(handle_for("sdxl").preset, loras=({"ref": "200@2000", "weight": 0.8},
                                                      {"ref": str(tiny_loras["sdxl"][0]), "triggers": ["a", "b"]}))
    specs = preset_lora_specs(preset)
    assert [s.weight for s in specs] == [0.8, 1.0] and specs[0].triggers == ("ohwx",)
    assert specs[1].triggers == ("a", "b") and specs[1].trigger_weight == 0.5
    metadata = json.dumps(lora_metadata(specs))
    assert "urn:air:sdxl:lora:civitai:200@2000" in metadata and specs[0].adapter_name[3:] in metadata
    assert KEY not in metadata and KEY not in caplog.text and civitai_env.key_leaks() == []
