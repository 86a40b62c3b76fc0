"""Shared pieces of the node classes."""

from ..core.handle import HANDLE_TYPE

CATEGORY = "Diffusers Presets"

HANDLE_INPUT = (HANDLE_TYPE, {"tooltip": "A preset's pipeline, from PresetLoader (optionally through "
                                         "VramProfile or CivitaiLoraLoader)."})
