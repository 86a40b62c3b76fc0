"""LoRAs on the tiny pipelines of every family, through the CivitaiLoraLoader node and the
sampler's path: effect, weight 0, stacking, reweighting without reloads, removal."""

from __future__ import annotations

import pytest
import torch

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.handle import LoraSpec
from diffusers_presets.core.families.base import SamplingParams
from diffusers_presets.core.lora.apply import load_adapter, loaded_adapters
from diffusers_presets.core.lora.stack import prepare_generation
from diffusers_presets.nodes.lora_loader import NO_CHOICE, CivitaiLoraLoader
from tests.fake_civitai import safetensors_bytes
from tests.lora.conftest import FAMILIES
from tests.lora.helpers import handle_for, render


PARAMS = SamplingParams(prompt="a red fox", negative_prompt="", steps=2, guidance_scale=7.0, width=64, height=64,
                        batch_size=1, seed=3)


def add(handle, reference: str, strength: float = 1.0, trigger_weight: float = 1.0, triggers: str = ""):
    return CivitaiLoraLoader().load(handle, NO_CHOICE, reference, strength, trigger_weight, triggers)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_applies_a_local_lora_and_weight_zero_is_no_lora(family, host, tiny_loras, fresh_cache) -> None:
    base = handle_for(family)
    plain, _ = render(base)
    with_lora, words = add(base, str(tiny_loras[family][0]), strength=1.0)
    assert words == ""
    changed, _ = render(with_lora)
    assert (changed - plain).abs().max() > 0.01
    zero, _ = add(base, str(tiny_loras[family][0]), strength=0.0)
    assert torch.equal(render(zero)[0], plain)
    assert torch.equal(render(base)[0], plain)  # the loader left the graph: no LoRA next run
    assert fresh_cache.loads == 1


def test_by_air_trigger_words_reach_the_prompt_and_the_string_output(civitai_env, host, tiny_loras,
                                                                     fresh_cache) -> None:
    civitai_env.add_lora(100, 1000, tiny_loras["flux"][0].read_bytes(), base_model="Flux.1 D",
                         trained_words=["pixel art", "8-bit, retro"], ecosystem="flux1")
    handle, words = add(handle_for("flux"), civitai_env.air(1000))
    assert words == "pixel art, 8-bit, retro"
    images, params = render(handle, prompt="a red fox")
    assert params.prompt == "a red fox, pixel art, 8-bit, retro" and params.conditioning is None
    # weight 0: the same picture as no LoRA with the same words typed in
    zero, _ = add(handle_for("flux"), civitai_env.air(1000), strength=0.0)
    assert torch.equal(render(zero)[0], render(handle_for("flux"), prompt=params.prompt)[0])
    assert not torch.equal(images, render(zero)[0])
    spec = handle.loras[0]
    assert dict(spec.provenance)["air"] == "urn:air:flux1:lora:civitai:100@1000"


def test_by_url_and_user_trigger_words(civitai_env, host, tiny_loras, fresh_cache) -> None:
    other_host = civitai_env.base_url.replace("127.0.0.1", "localhost")
    civitai_env.plain_files["files/style.safetensors"] = tiny_loras["zimage"][0].read_bytes()
    handle, words = add(handle_for("zimage"), f"{other_host}/files/style.safetensors", triggers="ohwx style\nbold")
    assert words == "ohwx style, bold"
    _, params = render(handle, prompt="a red fox")
    assert params.prompt == "a red fox, ohwx style, bold"


def test_two_stacked_loras_and_reweighting_never_reload(host, tiny_loras, fresh_cache, monkeypatch) -> None:
    base = handle_for("sdxl")
    pipe = base.pipeline()
    calls = []
    original = pipe.load_lora_weights
    monkeypatch.setattr(pipe, "load_lora_weights", lambda *a, **k: (calls.append(k["adapter_name"]), original(*a, **k)))
    first, _ = add(base, str(tiny_loras["sdxl"][0]))
    both, _ = add(first, str(tiny_loras["sdxl"][1]), strength=0.7)
    assert [spec.weight for spec in both.loras] == [1.0, 0.7]
    one, _ = render(first)
    stacked, _ = render(both)
    assert (stacked - one).abs().max() > 0.01
    assert set(pipe.get_active_adapters()) == {spec.adapter_name for spec in both.loras}
    for weight in (0.2, 1.5, 0.0):  # reweight: set_adapters only
        prepare_generation(pipe, "sdxl", PARAMS, add(first, str(tiny_loras["sdxl"][1]), strength=weight)[0].loras)
    prepare_generation(pipe, "sdxl", PARAMS, add(base, str(tiny_loras["sdxl"][1]))[0].loras)  # swap
    assert sorted(calls) == sorted(spec.adapter_name for spec in both.loras)  # each file loaded once
    assert fresh_cache.loads == 1 and base.pipeline() is pipe
    assert torch.equal(render(both)[0], stacked)


def test_an_incompatible_lora_is_refused_before_any_weights_load(civitai_env, host, tiny_loras, fresh_cache) -> None:
    civitai_env.add_lora(101, 1010, tiny_loras["flux"][0].read_bytes(), base_model="Flux.1 D")
    with pytest.raises(PresetsError) as info:
        add(handle_for("sdxl"), "101@1010")
    assert info.value.code == "lora_incompatible"
    assert "Flux.1" in info.value.message and "SDXL" in info.value.message
    with pytest.raises(PresetsError) as info:  # no metadata: the safetensors header decides
        add(handle_for("zimage"), str(tiny_loras["anima"][0]))
    assert info.value.code == "lora_incompatible" and "from its safetensors header" in info.value.message
    assert fresh_cache.loads == 0


def test_partly_compatible_loras_warn(civitai_env, host, tiny_loras, fresh_cache, caplog) -> None:
    civitai_env.add_lora(102, 1020, tiny_loras["sdxl"][0].read_bytes(), base_model="Pony")
    handle, _ = add(handle_for("sdxl"), "102@1020")
    assert "trained on Pony and is applied to a Illustrious model" in caplog.text
    add(handle_for("chroma"), str(tiny_loras["flux"][0]))
    assert "made for Flux.1" in caplog.text and "Chroma preset" in caplog.text
    assert handle.loras


def test_a_lora_that_matches_nothing_is_an_error(host, tiny_loras, fresh_cache, tmp_path) -> None:
    pipe = handle_for("flux").pipeline()
    spec = LoraSpec(adapter_name="dp_nothing", path=tiny_loras["sdxl"][0])
    with pytest.raises(PresetsError) as info:
        load_adapter(pipe, "flux", spec)
    assert info.value.code == "lora_incompatible" and "none of the" in info.value.message
    assert "dp_nothing" not in loaded_adapters(pipe)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(safetensors_bytes(500))
    with pytest.raises(PresetsError) as info:
        load_adapter(pipe, "flux", LoraSpec(adapter_name="dp_broken", path=broken))
    assert info.value.code in ("lora_invalid", "lora_incompatible")


def test_loader_errors(host, tiny_loras, fresh_cache) -> None:
    with pytest.raises(PresetsError) as info:
        CivitaiLoraLoader().load(handle_for("sdxl"), NO_CHOICE, "  ", 1.0, 0.5)
    assert info.value.code == "input_invalid"
    with pytest.raises(PresetsError) as info:
        add(handle_for("sdxl"), "missing.safetensors")
    assert info.value.code == "lora_not_found" and "loras" in info.value.message
    with pytest.raises(PresetsError) as info:
        add(handle_for("sdxl"), str(tiny_loras["sdxl"][0]), strength=2.5)
    assert info.value.code == "input_invalid"


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_works_under_inference_mode_like_inside_comfyui(family, host, tiny_loras, fresh_cache) -> None:
    """ComfyUI runs every node inside torch.inference_mode(): loading, reweighting and removing
    adapters there must work and give the same images as outside it."""
    base = handle_for(family)
    with torch.inference_mode():
        plain, _ = render(base)
        with_lora, _ = add(base, str(tiny_loras[family][0]), strength=0.7)
        changed, _ = render(with_lora)
        reweighted, _ = render(add(base, str(tiny_loras[family][0]), strength=1.3)[0])
        again, _ = render(base)
    assert (changed - plain).abs().max() > 0.01 and not torch.equal(changed, reweighted)
    assert torch.equal(again, plain)


def test_flux_redux_applies_the_stack_and_records_provenance(host, tiny_loras, fresh_cache) -> None:
    from diffusers_presets.nodes.flux_redux import FluxRedux

    reference = torch.linspace(0, 1, 32 * 32 * 3).reshape(1, 32, 32, 3)
    base = handle_for("flux")
    with_lora, _ = add(base, str(tiny_loras["flux"][0]), strength=1.0)
    info: dict = {}
    (changed,) = FluxRedux().generate(with_lora, reference, 1, 64, 64, 1, "", 0.5, extra_pnginfo=info)
    (plain,) = FluxRedux().generate(base, reference, 1, 64, 64, 1, "", 0.5)
    assert (changed - plain).abs().max() > 0.01
    (entry,) = info["loras"]
    assert entry["weight"] == 1.0 and len(entry["sha256"]) == 64
