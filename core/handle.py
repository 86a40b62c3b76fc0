"""The value that flows along the MODEL wire: PresetLoader → VramProfile → CivitaiLoraLoader →
FixedSampler / FluxRedux.

A handle is an immutable description (resolved preset, weights source, VRAM profile, LoRA
stack). Nodes derive new handles instead of mutating, so ComfyUI's output cache stays correct
and a loader removed from the graph simply drops out of the next run's stack. The pipeline
itself lives in the process-wide cache (``core.cache``) and is fetched with :meth:`pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .families.base import ModelSource

if TYPE_CHECKING:
    from .presets import Preset

HANDLE_TYPE = "DP_PIPELINE"  # ComfyUI socket type of the handle


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA in the stack, already resolved to a verified local file."""

    adapter_name: str  # stable per file (derived from its sha256), used with set_adapters
    path: Path
    weight: float = 1.0
    triggers: tuple[str, ...] = ()
    trigger_weight: float = 0.5
    # What goes into PNG metadata: air, version id, sha256, source url (never a key).
    provenance: tuple[tuple[str, str], ...] = ()
    # Catalog overrides (the only way fixed parameters change), None = keep the preset's.
    guidance_scale: Optional[float] = None
    clip_skip: Optional[int] = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class PipelineHandle:
    preset: "Preset"
    source: ModelSource
    vram_profile: str = "auto"
    loras: tuple[LoraSpec, ...] = field(default_factory=tuple)

    @property
    def family_name(self) -> str:
        return self.preset.family

    def with_vram_profile(self, profile: str) -> "PipelineHandle":
        return replace(self, vram_profile=profile)

    def with_lora(self, lora: LoraSpec) -> "PipelineHandle":
        others = tuple(item for item in self.loras if item.adapter_name != lora.adapter_name)
        return replace(self, loras=others + (lora,))

    def pipeline(self) -> Any:
        """The loaded pipeline for this handle, from the process-wide cache (not held: use
        ``pipeline_cache().use(handle)`` to generate with it)."""
        from .cache import pipeline_cache

        return pipeline_cache().get(self)


def load_handle(preset_id: str, model_override: str = "") -> PipelineHandle:
    """Resolve a preset id and an optional override into a handle whose weights exist.
    An empty override falls back to the host's (``--model PRESET=SOURCE`` in the runner).
    PresetLoader, the runner server and the OpenAI API all build handles here."""
    from .host import get_host
    from .lora.stack import preset_lora_specs  # urllib & co.: not at pack import
    from .presets import registry
    from .sources import apply_override, resolve_source
    from .vram import default_profile

    preset = registry().get(preset_id)
    override = model_override.strip() or get_host().model_overrides.get(preset.id, "")
    preset = apply_override(preset, override)
    source = resolve_source(preset)
    handle = PipelineHandle(preset=preset, source=source, vram_profile=default_profile())
    for spec in preset_lora_specs(preset):  # LoRAs the preset ships with
        handle = handle.with_lora(spec)
    return handle
