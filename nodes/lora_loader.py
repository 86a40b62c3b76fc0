"""CivitaiLoraLoader: add a LoRA (Civitai AIR or URL, Hugging Face file, local file or catalog
entry) to the pipeline's LoRA stack."""

from __future__ import annotations

import logging

from ..core.errors import PresetsError
from ..core.families import get_family
from ..core.handle import HANDLE_TYPE, PipelineHandle
from .common import CATEGORY, HANDLE_INPUT

log = logging.getLogger(__name__)

NO_CHOICE = "(use the reference below)"
WEIGHT = {"min": 0.0, "max": 2.0, "step": 0.05}


def lora_choices() -> list[str]:
    """Catalog entries (theme / label [family]) first, then the files in the loras folders."""
    from ..core.lora.catalog import catalog
    from ..core.lora.library import list_local

    choices = [NO_CHOICE]
    try:
        choices += sorted(entry.choice for entry in catalog())
    except PresetsError as exc:  # keep ComfyUI's node list working; the error shows in the log
        log.error("%s", exc)
    return choices + list_local()


class CivitaiLoraLoader:
    TITLE = "Civitai LoRA Loader (Diffusers)"
    DESCRIPTION = ("Adds a LoRA to the pipeline: paste a Civitai AIR (urn:air:sdxl:lora:civitai:328553@368189), a "
                   "Civitai page or download URL, an https or Hugging Face (hf://owner/repo/file.safetensors) URL, "
                   "or pick a catalog entry or local file. It downloads once (verified, resumable; set "
                   "CIVITAI_API_KEY in the environment for LoRAs that need a login), is checked against the "
                   "preset's model family, and its trigger words join the prompt. Chain loaders to stack LoRAs.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (HANDLE_TYPE, "STRING")
    RETURN_NAMES = ("pipeline", "trigger_words")
    OUTPUT_TOOLTIPS = ("The pipeline with this LoRA added to its stack; wire it into FixedSampler or another loader.",
                       "This LoRA's trigger words, comma separated (already added to the prompt by the sampler).")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pipeline": HANDLE_INPUT,
                "lora": (lora_choices(), {"default": NO_CHOICE, "tooltip": "A catalog entry (theme / label [family]) "
                                          "or a file in the loras folder. Ignored when a reference is given."}),
                "reference": ("STRING", {"default": "", "tooltip": "Civitai AIR (urn:air:sdxl:lora:civitai:ID@VERSION, "
                                         "ID@VERSION, ID), Civitai URL, https URL of a .safetensors file, "
                                         "hf://owner/repo/file.safetensors or a local path. Never put an API key "
                                         "here: set CIVITAI_API_KEY instead."}),
                "strength": ("FLOAT", {"default": 1.0, **WEIGHT, "tooltip": "LoRA weight, 0.0-2.0 (0 = no effect). "
                                       "For a catalog entry it applies when use_catalog_strength is off. Changing it "
                                       "reloads nothing."}),
                "trigger_weight": ("FLOAT", {"default": 0.5, **WEIGHT, "tooltip": "Weight of the trigger words in "
                                             "the prompt where the text encoder allows weighting (SDXL); plain "
                                             "text otherwise."}),
            },
            "optional": {
                "trigger_words": ("STRING", {"default": "", "tooltip": "Trigger words to use instead of the LoRA's "
                                             "own (comma separated). Empty = from Civitai or the catalog."}),
                # Last on purpose: ComfyUI maps saved widget values by position, so older workflows
                # keep their values and get this input's default.
                "use_catalog_strength": ("BOOLEAN", {"default": True, "label_on": "catalog strength",
                                                     "label_off": "node strength",
                                                     "tooltip": "For a catalog entry: use the strength the catalog "
                                                     "gives it (on) or this node's strength (off). No effect on a "
                                                     "reference or local file."}),
            },
        }

    def load(self, pipeline: PipelineHandle, lora: str, reference: str, strength: float, trigger_weight: float,
             trigger_words: str = "", use_catalog_strength: bool = True) -> tuple[PipelineHandle, str]:
        from ..core.lora.catalog import find_entry
        from ..core.lora.stack import lora_spec

        preset = pipeline.preset
        if not (preset.loras_supported and get_family(preset.family).supports_lora):
            raise PresetsError("family_mismatch", f"preset {preset.id} ({preset.family}) does not take LoRAs.",
                               "remove the CivitaiLoraLoader or use a preset that supports LoRAs.")
        entry = None
        text = reference.strip()
        if not text:
            if lora == NO_CHOICE:
                raise PresetsError("input_invalid", "CivitaiLoraLoader has neither a reference nor a chosen LoRA.",
                                   "paste a Civitai AIR or URL into `reference`, or pick an entry in `lora` "
                                   "(bypass the node to run without it).")
            entry = find_entry(lora)
            text = entry.reference if entry else lora
            if entry and entry.family != preset.family:
                raise PresetsError("lora_incompatible", f"the catalog LoRA '{entry.label}' is for {entry.family}, but "
                                   f"preset {preset.id} is {preset.family}.",
                                   f"pick a catalog entry marked [{preset.family}].")
        if entry is not None and use_catalog_strength:
            if strength != entry.strength:
                log.info("%s: using the catalog strength %g, not the node's %g (turn use_catalog_strength off to "
                         "use the node's)", entry.label, entry.strength, strength)
            strength = entry.strength
        spec = lora_spec(preset, text, weight=strength, triggers=trigger_words,
                         trigger_weight=trigger_weight, entry=entry)
        return pipeline.with_lora(spec), ", ".join(spec.triggers)
