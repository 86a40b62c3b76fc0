"""FixedSampler: generate with the preset's fixed steps, CFG and sampler."""

from __future__ import annotations

from typing import Optional

from ..core.handle import PipelineHandle
from ..core.sampler import MAX_BATCH, MAX_SEED, GenerationRequest, generate
from .common import CATEGORY, HANDLE_INPUT, record_lora_provenance

SIZE_INPUT = {"default": 0, "min": 0, "max": 4096, "step": 8,
              "tooltip": "0 = the preset's default size. Must fit the family's size rule (e.g. multiples of 16 for Flux)."}


class FixedSampler:
    TITLE = "Fixed Sampler (Diffusers)"
    DESCRIPTION = ("Generates images with the preset's fixed steps, CFG and sampler. The preset's prompt template "
                   "and default negative prompt are applied around your text (see the log).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The generated images, float32 [batch, height, width, 3] in 0..1.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                      "tooltip": "What to draw. Tags for tag-style presets, sentences otherwise."}),
                "negative_prompt": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                               "tooltip": "What to avoid. Ignored (with a warning) by families without "
                                                          "negative prompts (Flux, Z-Image)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                 "tooltip": "Image i of a batch uses seed + i."}),
                "width": ("INT", SIZE_INPUT),
                "height": ("INT", SIZE_INPUT),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": MAX_BATCH, "tooltip": "Images per run."}),
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
