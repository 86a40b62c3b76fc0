"""PresetLoader: pick a preset (and optionally other weights) → a pipeline handle."""

from __future__ import annotations

import logging

from ..core.errors import PresetsError
from ..core.handle import HANDLE_TYPE, PipelineHandle, load_handle
from ..core.presets import presets_fingerprint, registry
from .common import CATEGORY

log = logging.getLogger(__name__)


class PresetLoader:
    TITLE = "Preset Loader (Diffusers)"
    DESCRIPTION = ("Loads a preset: a model family, its weights and the steps, CFG and sampler it fixes. "
                   "The weights load on first use and stay cached across runs.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (HANDLE_TYPE,)
    RETURN_NAMES = ("pipeline",)
    OUTPUT_TOOLTIPS = ("The preset's pipeline; wire it into FixedSampler (optionally through VramProfile or "
                       "CivitaiLoraLoader).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        try:
            presets = registry()
            ids = presets.ids()
            default = presets.default_for("sdxl").id
        except PresetsError as exc:  # keep ComfyUI's node list working; the error shows on run
            log.error("%s", exc)
            ids, default = ["<presets failed to load: see the log>"], "<presets failed to load: see the log>"
        return {
            "required": {
                "preset": (ids, {"default": default, "tooltip": "Preset id: <family>/<name>. Its steps, CFG and "
                                                                "sampler are fixed."}),
            },
            "optional": {
                "model_override": ("STRING", {
                    "default": "",
                    "tooltip": "Other weights for this preset, keeping its fixed parameters: `tiny` (random-weight "
                               "test model), a diffusers folder, a checkpoint file, or a Hugging Face repo id "
                               "(org/name[@revision]). Empty = the preset's own weights.",
                }),
            },
        }

    @classmethod
    def IS_CHANGED(cls, preset: str, model_override: str = "") -> str:
        # An edited preset file must not be served from ComfyUI's output cache.
        return presets_fingerprint()

    def load(self, preset: str, model_override: str = "") -> tuple[PipelineHandle]:
        handle = load_handle(preset, model_override)
        log.info("preset %s: %s, steps %d, cfg %s, sampler %s, weights %s", handle.preset.id,
                 handle.preset.family, handle.preset.steps, handle.preset.cfg, handle.preset.sampler_label,
                 handle.source.describe())
        return (handle,)
