"""FixedSampler: generate with the preset's fixed steps, CFG and sampler."""

from __future__ import annotations

from typing import Optional

from ..core.handle import PipelineHandle
from ..core.sampler import GenerationRequest, generate
from .common import (BATCH_INPUT, CATEGORY, HANDLE_INPUT, IMAGE_OUTPUT_TOOLTIP, SEED_INPUT, SIZE_INPUT,
                     prompt_input, record_lora_provenance)


class FixedSampler:
    TITLE = "Fixed Sampler (Diffusers)"
    DESCRIPTION = ("Generates images with the preset's fixed steps, CFG and sampler. The preset's prompt template "
                   "and default negative prompt are applied around your text (see the log).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (IMAGE_OUTPUT_TOOLTIP,)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "prompt": prompt_input("What to draw. Tags for tag-style presets, sentences otherwise."),
                "negative_prompt": prompt_input("What to avoid. Ignored (with a warning) by families without "
                                                "negative prompts (Flux, Z-Image)."),
                "seed": SEED_INPUT,
                "width": SIZE_INPUT,
                "height": SIZE_INPUT,
                "batch_size": BATCH_INPUT,
            },
            "hidden": {"extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def sample(self, pipeline: PipelineHandle, prompt: str, negative_prompt: str, seed: int, width: int,
               height: int, batch_size: int, extra_pnginfo: Optional[dict] = None) -> tuple:
        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, seed=seed, width=width,
                                    height=height, batch_size=batch_size)
        output = generate(pipeline, request)
        record_lora_provenance(extra_pnginfo, output.info)
        return (output.images,)
