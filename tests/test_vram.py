"""VRAM planning (pure) and applying on this CPU-only machine."""

from __future__ import annotations

import logging

import pytest

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.vram import GIB, plan_vram


def plan(profile: str, free_gib: float, model_gib: float, largest_gib: float, accelerator: str | None = "cuda"):
    return plan_vram(profile, accelerator=accelerator, free_vram=int(free_gib * GIB),
                     model_bytes=int(model_gib * GIB), largest_component_bytes=int(largest_gib * GIB))


@pytest.mark.parametrize("free, model, largest, expected", [
    (80, 33, 23, "full"),       # Flux dev bf16 on an H100
    (24, 33, 23, "lowvram"),    # ... on a 24 GB card: the 23 GiB transformer alone does not fit with headroom
    (40, 33, 23, "balanced"),   # the transformer fits, the whole pipeline does not
    (24, 7, 5, "full"),         # SDXL on a 24 GB card
    (8, 7, 5, "balanced"),      # SDXL on an 8 GB card
    (4, 7, 5, "lowvram"),       # SDXL on a 4 GB card
])
def test_auto_picks_from_free_vram_and_model_size(free, model, largest, expected) -> None:
    result = plan("auto", free, model, largest)
    assert result.applied == expected
    assert result.vae_tiling == (expected != "full")
    assert "GiB" in result.reason


@pytest.mark.parametrize("profile", ["full", "balanced", "lowvram"])
def test_explicit_profiles_are_applied_as_asked(profile: str) -> None:
    assert plan(profile, 1, 33, 23).applied == profile


@pytest.mark.parametrize("profile", ["auto", "full", "balanced", "lowvram"])
def test_without_accelerator_nothing_is_offloaded(profile: str) -> None:
    result = plan(profile, 0, 33, 23, accelerator=None)
    assert (result.applied, result.device, result.vae_tiling) == ("none", "cpu", False)
    assert "no accelerator" in result.reason


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(PresetsError) as info:
        plan("turbo", 8, 7, 5)
    assert info.value.code == "input_invalid" and "balanced" in info.value.fix


def test_apply_on_cpu_applies_nothing_and_says_so(caplog) -> None:
    torch = pytest.importorskip("torch")
    from diffusers_presets.core.vram import apply_vram_plan

    class Pipe:
        components = {"unet": torch.nn.Linear(4, 4)}

        def to(self, *_args):
            raise AssertionError("must not move anything on a CPU-only machine")

        def enable_model_cpu_offload(self, **_kwargs):
            raise AssertionError("must not offload on a CPU-only machine")

    if torch.cuda.is_available():
        pytest.skip("this machine has an accelerator")
    with caplog.at_level(logging.INFO):
        result = apply_vram_plan(Pipe(), "lowvram")
    assert result.applied == "none"
    assert "no accelerator" in caplog.text


@pytest.mark.parametrize("applied", ["full", "balanced", "lowvram"])
@pytest.mark.parametrize("preset_id", ["demo/sdxl", "demo/anima"])
def test_every_placement_runs_and_keeps_the_image(preset_id, applied, host, tiny_models, fresh_cache) -> None:
    """The offload code paths, exercised with the CPU as the 'accelerator' (diffusers accepts
    that): each must leave a pipeline that still produces the same image. Anima is a modular
    pipeline without pipeline-level offload methods."""
    import torch

    from diffusers_presets.core.cache import torch_dtype
    from diffusers_presets.core.families import get_family
    from diffusers_presets.core.sampler import GenerationRequest, generate
    from diffusers_presets.core.vram import VramPlan, place_pipeline
    from diffusers_presets.nodes.preset_loader import PresetLoader

    (handle,) = PresetLoader().load(preset_id)
    request = GenerationRequest(prompt="a fox", seed=5)
    expected = generate(handle, request).images
    placed = get_family(handle.family_name).load(handle.source, torch_dtype(handle.preset.dtype))
    place_pipeline(placed, VramPlan("test", applied, "cpu", applied != "full", "test"))
    fresh_cache.entry(handle).pipeline = placed  # the next run uses the placed pipeline
    assert torch.allclose(generate(handle, request).images, expected, atol=1e-4)
