"""Shared pieces of the node classes."""

from typing import Any, Optional

from ..core.handle import HANDLE_TYPE
from ..core.sampler import MAX_BATCH, MAX_SEED

CATEGORY = "Diffusers Presets"

# Inputs FixedSampler, FluxRedux and ImageEdit share, so the nodes read the same in the canvas.
SEED_INPUT = ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                      "tooltip": "Image i of a batch uses seed + i."})
SIZE_INPUT = ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                      "tooltip": "0 = the preset's default size. Must fit the family's size rule (e.g. multiples "
                                 "of 16 for Flux)."})
BATCH_INPUT = ("INT", {"default": 1, "min": 1, "max": MAX_BATCH, "tooltip": "Images per run."})
IMAGE_OUTPUT_TOOLTIP = "The generated images, float32 [batch, height, width, 3] in 0..1."



def prompt_input(tooltip: str) -> tuple:
    """A prompt text box (multiline, dynamic prompts) with the node's own tooltip."""
    return ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "", "tooltip": tooltip})


HANDLE_INPUT = (HANDLE_TYPE, {"tooltip": "A preset's pipeline, from PresetLoader (optionally through "
                                         "VramProfile or CivitaiLoraLoader)."})


def record_lora_provenance(extra_pnginfo: Optional[dict], info: dict[str, Any]) -> None:
    """Put the LoRAs used (AIR, version, sha256, source; never a key) into the PNG metadata:
    SaveImage writes every EXTRA_PNGINFO key as a text chunk, in ComfyUI and in the runner."""
    if isinstance(extra_pnginfo, dict) and "loras" in info:
        extra_pnginfo["loras"] = info["loras"]
