"""ImageEdit: img2img, or inpainting with a mask, with the preset's fixed steps, CFG and sampler."""

from __future__ import annotations

from typing import Any, Optional

from ..core.edit import edit_families, edit_generate
from ..core.sampler import GenerationRequest
from .common import (BATCH_INPUT, CATEGORY, HANDLE_INPUT, IMAGE_OUTPUT_TOOLTIP, SEED_INPUT, SIZE_INPUT,
                     prompt_input, record_lora_provenance)


class ImageEdit:
    TITLE = "Image Edit (Diffusers)"
    DESCRIPTION = ("Changes an image with the preset's fixed steps, CFG and sampler: img2img, or inpainting where "
                   "the mask is set. The family's img2img/inpaint pipeline shares the loaded model's weights (no "
                   f"second copy). img2img: {', '.join(edit_families(False))}; "
                   f"inpaint: {', '.join(edit_families(True))}.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (IMAGE_OUTPUT_TOOLTIP,)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "image": ("IMAGE", {"tooltip": "The image to change (the first of a batch)."}),
                "seed": SEED_INPUT,
                "width": SIZE_INPUT,
                "height": SIZE_INPUT,
                "batch_size": BATCH_INPUT,
                "prompt": prompt_input("What the result should show."),
                "negative_prompt": prompt_input("What to avoid (families with negative prompts)."),
                "strength": ("FLOAT", {"default": 0.6, "min": 0.01, "max": 1.0, "step": 0.01,
                                       "tooltip": "How far from the image: a little (0.1) to a new image (1.0). "
                                                  "Runs this share of the preset's steps."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Where to repaint (1) and keep (0); LoadImage's MASK marks the "
                                             "transparent pixels. None = img2img on the whole image."}),
            },
            "hidden": {"extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def edit(self, pipeline: Any, image: Any, seed: int, width: int, height: int, batch_size: int, prompt: str,
             negative_prompt: str, strength: float, mask: Optional[Any] = None,
             extra_pnginfo: Optional[dict] = None) -> tuple:
        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, seed=seed, width=width,
                                    height=height, batch_size=batch_size)
        output = edit_generate(pipeline, request, image, mask, strength)
        record_lora_provenance(extra_pnginfo, output.info)
        return (output.images,)
