"""The contract every model family module fulfils.

A family knows how to load its diffusers pipeline from a :class:`ModelSource`, which sizes it
accepts, how to run one generation from :class:`SamplingParams`, and how to write a tiny
random-weight copy of itself for tests and the offline demo. Everything above this layer
(presets, cache, sampler, nodes) is family-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import PresetsError

# Called once per denoising step with (step_index, total_steps). It may raise
# core.errors.Interrupted to stop generation.
StepCallback = Callable[[int, int], None]


def check_size_rule(family: str, width: int, height: int, multiple: int, min_size: int, max_size: int) -> None:
    """Raise ``size_invalid`` unless both sides are multiples of ``multiple`` within
    [min_size, max_size]; the fix names the nearest allowed values."""
    for label, value in (("width", width), ("height", height)):
        if value % multiple or not min_size <= value <= max_size:
            below = min(max(min_size, value // multiple * multiple), max_size)
            above = min(below + multiple, max_size)
            raise PresetsError(
                "size_invalid",
                f"{label} {value} is not allowed for the {family} family: it needs a multiple of "
                f"{multiple} from {min_size} to {max_size}.",
                f"use {label} {below}" + (f" or {above}." if above != below else "."),
            )


@dataclass(frozen=True)
class ModelSource:
    """Where a pipeline's weights come from.

    kind:
      - ``hub``: ``repo_id`` at ``revision``, read from the local Hugging Face cache only
        unless downloads are explicitly enabled (``allow_download``).
      - ``folder``: a local diffusers folder at ``path`` (has ``model_index.json``).
      - ``single_file``: a checkpoint at ``path`` plus ``config``, a local diffusers folder
        (or a hub repo id already in the cache) that describes the pipeline.
    """

    kind: str
    path: Optional[Path] = None
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    config: Optional[str] = None
    allow_download: bool = False

    def describe(self) -> str:
        if self.kind == "hub":
            return f"{self.repo_id}@{self.revision or 'main'}"
        if self.kind == "single_file":
            return f"{self.path} (config {self.config})"
        return str(self.path)

    def cache_token(self) -> tuple:
        return (self.kind, str(self.path) if self.path else None, self.repo_id, self.revision, self.config)


@dataclass
class SamplingParams:
    """Everything one pipeline call needs, already resolved from the preset."""

    prompt: str
    negative_prompt: Optional[str]
    steps: int
    guidance_scale: float
    width: int
    height: int
    batch_size: int
    seed: int
    sampler: Optional[str] = None  # None = the pipeline's own scheduler
    clip_skip: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)  # preset `call_args`, passed through
    # Precomputed conditioning (e.g. compel-weighted embeds, Flux Redux embeds): when set,
    # these keyword arguments replace prompt/negative_prompt in the pipeline call.
    conditioning: Optional[dict[str, Any]] = None
    # Live previews: called after each step with the first image's latent, (C, H, W), unpacked.
    on_latents: Optional[Callable[[Any], None]] = None

    def generators(self) -> list:
        """One CPU generator per image (seed, seed+1, ...), so image i of a batch can be
        reproduced alone with seed+i."""
        import torch

        return [torch.Generator("cpu").manual_seed(self.seed + i) for i in range(self.batch_size)]


class Family:
    """Base class for a model family. Subclasses set the class attributes and implement
    :meth:`load`, :meth:`generate` and :meth:`build_tiny`."""

    name: str = ""
    pipeline_class: str = ""  # diffusers class name, for listings and errors
    supports_negative: bool = True
    supports_lora: bool = True
    size_multiple: int = 16
    min_size: int = 64
    max_size: int = 4096

    def check_size(self, width: int, height: int) -> None:
        """Raise ``size_invalid`` unless the size fits this family's hard limits."""
        check_size_rule(self.name, width, height, self.size_multiple, self.min_size, self.max_size)

    def load(self, source: ModelSource, dtype: Any) -> Any:
        """Load and return the pipeline. Must never make an implicit network call:
        hub sources use ``local_files_only=not source.allow_download``. A missing source
        raises ``model_not_found`` naming where it looked."""
        raise NotImplementedError

    def generate(self, pipe: Any, params: SamplingParams, on_step: StepCallback,
                 extra_kwargs: Optional[dict[str, Any]] = None) -> "GenerationResult":
        """Run one generation. Returns images as float32 ``[B,H,W,3]`` in 0..1 on the CPU.
        ``extra_kwargs`` go to the pipeline call as they are (an edit's image, mask, strength)."""
        raise NotImplementedError

    def build_tiny(self, dest: Path) -> None:
        """Write a tiny random-weight pipeline of this family in diffusers format to ``dest``."""
        raise NotImplementedError


@dataclass
class GenerationResult:
    images: Any  # torch.Tensor float32 [B,H,W,3], 0..1
    guidance_scale: float  # the guidance the pipeline actually used (read back from it)
