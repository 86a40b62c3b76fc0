"""The LoRA stack of a handle: building :class:`LoraSpec` entries (node, preset ``loras:``,
catalog) and applying the whole stack to one generation.

Everything that can fail for a user (bad reference, download, wrong family) happens in
:func:`lora_spec`, before any weights load; :func:`prepare_generation` runs in the sampler.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Optional

from ..errors import PresetsError
from ..families.base import SamplingParams
from ..handle import LoraSpec
from ..presets import Preset
from .catalog import CatalogEntry
from .compat import check_compatible, preset_base_model
from .triggers import clean_triggers, plan_prompt

log = logging.getLogger(__name__)

MAX_WEIGHT = 2.0


def _check_weight(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= MAX_WEIGHT:
        raise PresetsError("input_invalid", f"{name} {value} is outside 0.0..{MAX_WEIGHT}.",
                           f"use a {name} from 0.0 to {MAX_WEIGHT}.")
    return float(value)


def lora_spec(preset: Preset, reference: str, *, weight: float = 1.0,
              triggers: Optional[str] = None, trigger_weight: float = 0.5,
              entry: Optional[CatalogEntry] = None) -> LoraSpec:
    """Resolve ``reference`` (downloading it once, and only when Civitai's metadata does not
    already rule it out), check it fits the preset's family and lineage and describe it as a
    stack entry. ``triggers`` (comma or newline separated) replaces the LoRA's own trigger words;
    None or empty keeps them (catalog ``prompt`` first, else Civitai's trainedWords)."""
    weight = _check_weight("strength", weight)
    trigger_weight = _check_weight("trigger_weight", trigger_weight)
    from .resolve import resolve_lora  # the network client, only when there is a LoRA to resolve

    lora = resolve_lora(reference, dest=entry.download_path if entry else None, family=preset.family)
    check_compatible(preset.family, label=lora.label, base_model=lora.base_model, path=lora.path,
                     preset_base_model=preset_base_model(preset.lineage))
    given = triggers if triggers and triggers.strip() else (entry.prompt if entry else "")
    words = clean_triggers(given.replace("\n", ",").split(",")) if given.strip() else clean_triggers(lora.trained_words)
    log.info("%s: %s (sha256 %s), weight %g, trigger words: %s", lora.label, lora.path, lora.sha256[:12], weight,
             ", ".join(words) or "none")
    return LoraSpec(
        adapter_name=lora.adapter_name, path=lora.path, weight=weight, triggers=words, trigger_weight=trigger_weight,
        provenance=lora.provenance(), guidance_scale=entry.guidance_scale if entry else None,
        clip_skip=entry.clip_skip if entry else None, negative_prompt=entry.negative_prompt if entry else "",
    )


def preset_lora_specs(preset: Preset) -> tuple[LoraSpec, ...]:
    """The LoRAs a preset ships with (its ``loras:`` list), resolved and checked."""
    specs = []
    for item in preset.loras:
        triggers = item.get("triggers")
        if isinstance(triggers, (list, tuple)):
            triggers = ", ".join(str(t) for t in triggers)
        specs.append(lora_spec(preset, str(item["ref"]), weight=item.get("weight", 1.0),
                               triggers=triggers, trigger_weight=item.get("trigger_weight", 0.5)))
    return tuple(specs)


def prepare_generation(pipe: Any, family_name: str, params: SamplingParams,
                       loras: tuple[LoraSpec, ...]) -> SamplingParams:
    """Activate exactly ``loras`` on ``pipe`` and return ``params`` with their effects: trigger
    words in the prompt (compel conditioning for weighted SDXL triggers), catalog negative
    prompts appended, and catalog guidance_scale / clip_skip replacing the preset's. Call it on
    every generation, also with an empty stack (that switches LoRAs off)."""
    from .apply import activate_loras

    activate_loras(pipe, family_name, loras)
    if not loras:
        return params
    guidance = next((s.guidance_scale for s in reversed(loras) if s.guidance_scale is not None), None)
    clip_skip = next((s.clip_skip for s in reversed(loras) if s.clip_skip is not None), None)
    if guidance is not None or clip_skip is not None:
        log.info("catalog LoRA settings for this run: guidance_scale %s, clip_skip %s",
                 guidance if guidance is not None else params.guidance_scale,
                 clip_skip if clip_skip is not None else params.clip_skip)
        params = replace(params, guidance_scale=params.guidance_scale if guidance is None else float(guidance),
                         clip_skip=params.clip_skip if clip_skip is None else clip_skip)
    if params.conditioning:  # image embeds (Flux Redux) replace the prompt: nothing to add words to
        if any(spec.triggers for spec in loras):
            log.warning("the prompt is replaced by precomputed conditioning; LoRA trigger words are not added")
        return params
    plan = plan_prompt(pipe, family_name, params.prompt, params.negative_prompt, loras, params.clip_skip)
    return replace(params, prompt=plan.prompt, negative_prompt=plan.negative_prompt, conditioning=plan.conditioning)


def lora_metadata(loras: tuple[LoraSpec, ...]) -> list[dict[str, Any]]:
    """What goes into PNG metadata and run info per LoRA: AIR, version, sha256, source, weights."""
    return [{**dict(spec.provenance), "weight": spec.weight, "trigger_weight": spec.trigger_weight,
             "triggers": list(spec.triggers)} for spec in loras]
