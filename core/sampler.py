"""Generation with a preset's fixed steps, CFG and sampler.

``generate(handle, request)`` is the one path every image takes (FixedSampler, FluxRedux, the
runner and the server): validate the request against the preset, render the prompt template,
hold the pipeline from the cache (one generation per pipeline at a time: see ``core.cache``),
activate the handle's LoRA stack, run the family with per-step progress and interrupt checks,
and return ComfyUI ``IMAGE`` tensors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .cache import pipeline_cache
from .errors import PresetsError
from .families import get_family
from .families.base import SamplingParams
from .handle import PipelineHandle
from .host import current_run, get_host

log = logging.getLogger(__name__)

MAX_SEED = 2**64 - 1
MAX_BATCH = 64


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    width: int = 0  # 0 = the preset's default
    height: int = 0
    batch_size: int = 1


@dataclass(frozen=True)
class DerivedCall:
    """Generate with a pipeline derived from the loaded one (an edit's Img2Img / Inpaint
    pipeline, built with ``from_pipe``), passing ``kwargs`` (image, mask, strength) to it."""

    derive: Callable[[Any], Any]  # the loaded pipeline -> the pipeline to call
    kwargs: dict[str, Any]
    steps: int  # the steps this call runs (an edit runs part of the preset's)


@dataclass
class GenerationOutput:
    images: Any  # torch.Tensor float32 [B,H,W,3] in 0..1
    info: dict[str, Any] = field(default_factory=dict)  # what was run, for logs and metadata


def resolve_size(handle: PipelineHandle, width: int, height: int) -> tuple[int, int]:
    """Fill 0 with the preset's default size and check the result against the size rule."""
    preset = handle.preset
    width = width or preset.width
    height = height or preset.height
    preset.size.check(preset.family, width, height)
    get_family(preset.family).check_size(width, height)
    return width, height


def validate_request(request: GenerationRequest) -> None:
    if not 1 <= request.batch_size <= MAX_BATCH:
        raise PresetsError("input_invalid", f"batch size {request.batch_size} is outside 1..{MAX_BATCH}.",
                           f"use a batch size from 1 to {MAX_BATCH}.")
    # Image i of a batch uses seed + i, so the whole range must be valid seeds.
    last_seed = MAX_SEED - (request.batch_size - 1)
    if not 0 <= request.seed <= last_seed:
        raise PresetsError("input_invalid", f"seed {request.seed} with batch size {request.batch_size} is outside "
                           f"0..{last_seed} (image i of a batch uses seed + i, at most {MAX_SEED}).",
                           f"use a seed from 0 to {last_seed}.")


def generate(handle: PipelineHandle, request: GenerationRequest,
             conditioning: Optional[dict[str, Any]] = None, derived: Optional[DerivedCall] = None) -> GenerationOutput:
    """Generate ``request.batch_size`` images with ``handle``'s preset.

    ``conditioning`` (precomputed embeds, e.g. from Flux Redux) replaces the text prompt in
    the pipeline call; the prompt is still recorded in ``info``. ``derived`` runs an edit
    pipeline built from the loaded one instead of the loaded one itself.
    """
    from .lora.stack import lora_metadata, prepare_generation  # urllib & co.: not at pack import

    validate_request(request)
    preset = handle.preset
    family = get_family(preset.family)
    width, height = resolve_size(handle, request.width, request.height)
    prompt = preset.render_prompt(request.prompt)
    negative: Optional[str] = preset.render_negative(request.negative_prompt)
    if not preset.negative_prompt:
        if request.negative_prompt.strip():
            log.warning("%s does not use negative prompts (%s family); ignoring the negative prompt",
                        preset.id, preset.family)
        negative = None
    log.info("%s: prompt: %s", preset.id, prompt)
    if negative:
        log.info("%s: negative prompt: %s", preset.id, negative)

    host = get_host()
    progress = host.progress(derived.steps if derived is not None else preset.steps)
    steps_run = 0

    def on_step(index: int, total: int) -> None:
        nonlocal steps_run
        steps_run += 1
        progress.update_absolute(index + 1, total)
        host.throw_if_interrupted()

    run = current_run()
    # The runner's run gets the latents (its server sends them); inside ComfyUI the host's
    # progress bar draws them on the node.
    previews = run.preview_listener if run is not None else getattr(progress, "preview", None)
    params = SamplingParams(
        prompt=prompt, negative_prompt=negative, steps=preset.steps, guidance_scale=preset.cfg, width=width,
        height=height, batch_size=request.batch_size, seed=request.seed, sampler=preset.sampler,
        clip_skip=preset.clip_skip, extra=dict(preset.call_args), conditioning=conditioning,
        on_latents=(lambda latent: previews(latent, preset.family)) if previews is not None else None,
    )
    # Held for the whole call: LoRA activation and the scheduler swap mutate the shared pipeline.
    with pipeline_cache().use(handle) as entry:
        # Every run, also with an empty stack: that is what switches off a removed loader's LoRA.
        params = prepare_generation(entry.pipeline, preset.family, params, handle.loras)
        if params.prompt != prompt:
            log.info("%s: prompt with LoRA trigger words: %s", preset.id, params.prompt)
        host.throw_if_interrupted()
        started = time.perf_counter()
        # The family turns pipeline failures into `generation_failed` and lets the host's own
        # interrupt exception (raised from on_step) through unchanged.
        if derived is None:
            result = family.generate(entry.pipeline, params, on_step)
        else:
            result = family.generate(derived.derive(entry.pipeline), params, on_step, derived.kwargs)
        seconds = time.perf_counter() - started
    log.info("%s: %d image(s) %dx%d, %d steps, cfg %s, sampler %s, seed %d in %.2f s", preset.id,
             request.batch_size, width, height, steps_run, result.guidance_scale, preset.sampler_label, request.seed,
             seconds)
    info = {
        "preset": preset.id, "family": preset.family, "steps": steps_run, "cfg": result.guidance_scale,
        "sampler": preset.sampler_label, "seed": request.seed, "width": width, "height": height,
        "batch_size": request.batch_size, "prompt": params.prompt, "negative_prompt": params.negative_prompt or "",
        "source": handle.source.describe(), "seconds": round(seconds, 3),
    }
    if handle.loras:
        info["loras"] = lora_metadata(handle.loras)
    return GenerationOutput(result.images, info)
