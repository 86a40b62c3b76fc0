"""VramProfile: choose how the pipeline is placed on the accelerator."""

from __future__ import annotations

import logging

from ..core.handle import PipelineHandle
from ..core.vram import PROFILES, default_profile
from .common import CATEGORY, HANDLE_INPUT

log = logging.getLogger(__name__)


class VramProfile:
    TITLE = "VRAM Profile (Diffusers)"
    DESCRIPTION = ("Sets how the pipeline uses GPU memory. full: everything on the GPU. balanced: one model "
                   "component on the GPU at a time + VAE tiling. lowvram: layers streamed to the GPU + VAE "
                   "tiling. auto: picks from free VRAM and model size. Without a GPU nothing is offloaded.")
    CATEGORY = CATEGORY
    RETURN_TYPES = HANDLE_INPUT[:1]
    RETURN_NAMES = ("pipeline",)
    OUTPUT_TOOLTIPS = ("The same pipeline with this GPU memory profile; wire it into FixedSampler, FluxRedux or "
                       "CivitaiLoraLoader.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "profile": (list(PROFILES), {"default": default_profile(),
                                             "tooltip": "full | balanced | lowvram | auto (default from VRAM_PROFILE)."}),
            }
        }

    def apply(self, pipeline: PipelineHandle, profile: str) -> tuple[PipelineHandle]:
        log.info("%s: VRAM profile %s (applied when the pipeline loads; the plan is logged then)",
                 pipeline.preset.id, profile)
        return (pipeline.with_vram_profile(profile),)
