"""Shared pieces of the node classes."""

from typing import Any, Optional

from ..core.handle import HANDLE_TYPE

CATEGORY = "Diffusers Presets"

HANDLE_INPUT = (HANDLE_TYPE, {"tooltip": "A preset's pipeline, from PresetLoader (optionally through "
                                         "VramProfile or CivitaiLoraLoader)."})


def record_lora_provenance(extra_pnginfo: Optional[dict], info: dict[str, Any]) -> None:
    """Put the LoRAs used (AIR, version, sha256, source; never a key) into the PNG metadata:
    SaveImage writes every EXTRA_PNGINFO key as a text chunk, in ComfyUI and in the runner."""
    if isinstance(extra_pnginfo, dict) and "loras" in info:
        extra_pnginfo["loras"] = info["loras"]
