"""Generation the way the sampler does it: prepare_generation, then the family's generate."""

from __future__ import annotations

from diffusers_presets.core.families import get_family
from diffusers_presets.core.families.base import SamplingParams
from diffusers_presets.core.lora.stack import prepare_generation
from diffusers_presets.core.handle import load_handle

PRESETS = {"sdxl": "sdxl/illustrious", "flux": "flux/dev", "chroma": "chroma/flash", "zimage": "zimage/turbo",
           "anima": "anima/preview"}


def handle_for(family: str):
    return load_handle(PRESETS[family], "tiny")


def render(handle, prompt: str = "a red fox", negative: str = "", seed: int = 3, clip_skip=None):
    """(images, the SamplingParams the pipeline got). clip_skip is not the preset's: the tiny CLIP
    encoders have only two layers."""
    family = get_family(handle.family_name)
    pipe = handle.pipeline()
    params = SamplingParams(prompt=prompt, negative_prompt=negative if handle.preset.negative_prompt else None,
                            steps=2, guidance_scale=handle.preset.cfg, width=64, height=64, batch_size=1, seed=seed,
                            sampler=handle.preset.sampler,
                            clip_skip=clip_skip)
    params = prepare_generation(pipe, handle.family_name, params, handle.loras)
    return family.generate(pipe, params, lambda step, total: None).images, params
