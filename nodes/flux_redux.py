"""FluxRedux: images that carry reference images' content and style (Flux Redux)."""

from __future__ import annotations

from typing import Any, Optional

from ..core.handle import PipelineHandle
from ..core.redux import redux_generate
from ..core.sampler import GenerationRequest
from .common import (BATCH_INPUT, CATEGORY, HANDLE_INPUT, IMAGE_OUTPUT_TOOLTIP, SEED_INPUT, SIZE_INPUT,
                     prompt_input, record_lora_provenance)


class FluxRedux:
    TITLE = "Flux Redux (Diffusers)"
    DESCRIPTION = ("Makes new images that carry the content and style of the reference images, optionally steered "
                   "by a prompt (Flux Redux: SigLIP image encoder + Redux embedder, loaded once beside the Flux "
                   "pipeline and sharing its text encoders). Needs a Flux preset; steps and guidance stay the "
                   "preset's.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (IMAGE_OUTPUT_TOOLTIP,)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "reference": ("IMAGE", {"tooltip": "Reference image(s). Every image of a batch is one reference "
                                                   "of weight 1; their image tokens are averaged."}),
                "seed": SEED_INPUT,
                "width": SIZE_INPUT,
                "height": SIZE_INPUT,
                "batch_size": BATCH_INPUT,
                "prompt": prompt_input("Optional text that steers the result. Empty = the references alone."),
                "prompt_balance": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                             "tooltip": "Prompt against references. 0 = references only (the "
                                                        "prompt is ignored); 0.5 = both at full strength "
                                                        "(standard Redux); 1 = prompt only (reference tokens "
                                                        "muted). Between, the weaker side fades linearly."}),
            },
            "optional": {
                "reference_2": ("IMAGE", {"tooltip": "Optional second reference (a batch counts as several), "
                                                     "mixed in with its own weight."}),
                "reference_2_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                                 "tooltip": "Weight of each image of reference_2 against each "
                                                            "image of reference (weight 1). 0 = not used."}),
            },
            "hidden": {"extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def generate(self, pipeline: PipelineHandle, reference: Any, seed: int, width: int, height: int,
                 batch_size: int, prompt: str, prompt_balance: float, reference_2: Optional[Any] = None,
                 reference_2_weight: float = 1.0, extra_pnginfo: Optional[dict] = None) -> tuple:
        references = [(reference, 1.0)]
        if reference_2 is not None:
            references.append((reference_2, reference_2_weight))
        request = GenerationRequest(prompt=prompt, seed=seed, width=width, height=height, batch_size=batch_size)
        output = redux_generate(pipeline, references, request, prompt_balance)
        record_lora_provenance(extra_pnginfo, output.info)
        return (output.images,)
