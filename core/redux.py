"""Flux Redux: new images that carry the content and style of reference images.

``redux_generate`` is the one path (the FluxRedux node, the runner): diffusers'
``FluxPriorReduxPipeline`` (SigLIP image encoder + Redux image embedder) turns every reference
into image tokens, those are mixed by weight and appended to the prompt's T5 tokens, and the
result goes to :func:`core.sampler.generate` as ``prompt_embeds``/``pooled_prompt_embeds``. The
preset's FluxPipeline then samples with its fixed steps and guidance, per-step progress and
interrupts, exactly like FixedSampler.

The Redux pipeline is a companion of the Flux pipeline in the pipeline cache: loaded once,
unloaded with it, and built around the Flux pipeline's own CLIP/T5 text encoders (no copy).

Mixing, exact at the end points so that weight 0 means "not used":

- References: image tokens = Σ wᵢ·Iᵢ / Σ wᵢ. Every image of a batch is one reference with its
  input's weight; references of weight 0 are not encoded at all.
- ``prompt_balance`` b in [0, 1] cross-fades prompt and references with text weight
  t = min(1, 2b) and image weight i = min(1, 2(1 − b)):
  text tokens and pooled embedding = (1 − t)·E("") + t·E(prompt), image tokens × i.
  b = 0 ignores the prompt (identical to an empty prompt); b = 0.5 is diffusers' own Redux
  output for that prompt (both at full strength); b = 1 mutes the references.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from .cache import pipeline_cache, torch_dtype
from .errors import PresetsError, one_line
from .families import REDUX_DIR
from .families.base import ModelSource
from .handle import PipelineHandle
from .host import get_host
from .images import check_image, to_pil_images
from .lora.apply import activate_loras
from .sampler import GenerationOutput, GenerationRequest, generate, resolve_size, validate_request
from .sources import resolve_weights

log = logging.getLogger(__name__)

FLUX_FAMILY = "flux"
MIN_REFERENCE_SIDE = 8  # pixels; smaller images carry no content SigLIP can use
# FluxPriorReduxPipeline encodes T5 at 512 tokens; the text half of the conditioning matches it.
REDUX_TEXT_TOKENS = 512

# (IMAGE tensor [B,H,W,3], weight): every image of the batch is one reference of that weight.
Reference = tuple[Any, float]


def balance_weights(prompt_balance: float) -> tuple[float, float]:
    """(text weight, image weight) for a prompt/image balance in [0, 1] (see the module doc)."""
    return min(1.0, 2.0 * prompt_balance), min(1.0, 2.0 * (1.0 - prompt_balance))


def check_flux(handle: PipelineHandle) -> None:
    """Refuse handles whose preset is not a Flux preset (``family_mismatch``)."""
    if handle.family_name != FLUX_FAMILY:
        raise PresetsError(
            "family_mismatch",
            f"FluxRedux needs a Flux preset, but {handle.preset.id} is a {handle.family_name} preset.",
            "load a flux/* preset (e.g. flux/dev) in PresetLoader for FluxRedux; use FixedSampler for "
            f"{handle.family_name} presets.",
        )


def _check_inputs(handle: PipelineHandle, references: Sequence[Reference], prompt_balance: float) -> None:
    check_flux(handle)
    if not references:
        raise PresetsError("input_invalid", "FluxRedux got no reference image.", "connect a reference IMAGE.")
    for index, (image, weight) in enumerate(references, start=1):
        label = "reference" if index == 1 else f"reference_{index}"  # the node's input names
        check_image(image, label, min_side=MIN_REFERENCE_SIDE)
        if not (math.isfinite(weight) and weight >= 0):
            raise PresetsError("input_invalid", f"the weight of {label} is {weight}.", "use a weight of 0 or more.")
    if not any(weight > 0 for _, weight in references):
        raise PresetsError("input_invalid", "every reference has weight 0.", "give at least one reference a weight above 0.")
    if not (math.isfinite(prompt_balance) and 0.0 <= prompt_balance <= 1.0):
        raise PresetsError("input_invalid", f"the prompt balance {prompt_balance} is outside 0..1.",
                           "use 0 (references only) to 1 (prompt only); 0.5 gives both full strength.")


def redux_source(handle: PipelineHandle) -> ModelSource:
    """The local Redux weights of ``handle``'s preset, or ``model_not_found`` saying where we looked."""
    preset = handle.preset
    if preset.redux is None:
        raise PresetsError("model_not_found", f"preset {preset.id} names no Flux Redux weights.",
                           "add `redux: {repo: black-forest-labs/FLUX.1-Redux-dev, revision: main}` (or a "
                           "{folder: ...}) to the preset.")
    try:
        return resolve_weights(preset.redux, REDUX_DIR, preset)
    except PresetsError as exc:
        raise PresetsError(exc.code, f"the Flux Redux model of preset {preset.id}: {exc.message}", exc.fix) from exc


def redux_pipeline(handle: PipelineHandle, source: ModelSource) -> Any:
    """The FluxPriorReduxPipeline kept beside ``handle``'s Flux pipeline (loaded on first use)."""
    from .families.redux import load_redux

    def load(flux_pipe: Any) -> Any:
        redux = load_redux(source, torch_dtype(handle.preset.dtype), flux_pipe)
        # VRAM plans place the Flux pipeline only; run the image encoder where its text
        # encoders run. Moving the whole Redux pipeline would also move the shared encoders.
        device = flux_pipe._execution_device
        redux.image_encoder.to(device)
        redux.image_embedder.to(device)
        return redux

    # Keyed by source: two presets may share Flux weights but name different Redux weights.
    return pipeline_cache().companion(handle, f"redux:{source.cache_token()}", load)


def _image_tokens(redux: Any, references: Sequence[Reference]) -> Any:
    """The weighted mean of the references' Redux image tokens, [1, tokens, T5 width]."""
    import torch

    used = [(image, weight) for image, weight in references if weight > 0]
    pictures = [picture for image, _ in used for picture in to_pil_images(image)]
    weights = [weight for image, weight in used for _ in range(image.shape[0])]
    total = sum(weights)
    hidden = redux.encode_image(pictures, redux._execution_device, 1)
    tokens = redux.image_embedder(hidden).image_embeds
    # Mixed in float32 (bf16 weights would round each term); one reference gives w/w = 1 exactly.
    scale = torch.tensor([weight / total for weight in weights], dtype=torch.float32, device=tokens.device)
    return (tokens.float() * scale[:, None, None]).sum(dim=0, keepdim=True).to(tokens.dtype)


def _text_embeds(redux: Any, prompt: str, text_weight: float) -> tuple[Any, Any]:
    """(T5 tokens, CLIP pooled) = (1 − t)·E("") + t·E(prompt); skips encodings with weight 0."""

    def encode(text: str) -> tuple[Any, Any]:
        # prompt must be a string: with text encoders present, None raises inside diffusers.
        embeds, pooled, _ids = redux.encode_prompt(prompt=text, prompt_2=None, device=redux._execution_device,
                                                   max_sequence_length=REDUX_TEXT_TOKENS)
        return embeds, pooled

    if not prompt or text_weight == 0:
        return encode("")
    if text_weight == 1:
        return encode(prompt)
    (empty, empty_pooled), (full, full_pooled) = encode(""), encode(prompt)
    return (empty * (1 - text_weight) + full * text_weight,
            empty_pooled * (1 - text_weight) + full_pooled * text_weight)


def redux_conditioning(handle: PipelineHandle, references: Sequence[Reference], prompt: str = "",
                       prompt_balance: float = 0.5) -> dict[str, Any]:
    """``prompt_embeds`` and ``pooled_prompt_embeds`` for ``handle``'s FluxPipeline from the
    references and the (template-rendered) prompt, mixed as the module doc describes."""
    _check_inputs(handle, references, prompt_balance)
    return _conditioning(handle, redux_source(handle), references, prompt, prompt_balance)


def _conditioning(handle: PipelineHandle, source: ModelSource, references: Sequence[Reference], prompt: str,
                  prompt_balance: float) -> dict[str, Any]:
    import torch

    redux = redux_pipeline(handle, source)
    text_weight, image_weight = balance_weights(prompt_balance)
    rendered = handle.preset.render_prompt(prompt) if prompt.strip() else ""
    get_host().throw_if_interrupted()
    try:
        with torch.no_grad():
            text, pooled = _text_embeds(redux, rendered, text_weight)
            image = _image_tokens(redux, references)
            embeds = torch.cat([text, image.to(text.dtype) * image_weight], dim=1)
    except Exception as exc:
        raise PresetsError("generation_failed", f"{handle.preset.id}: FluxPriorReduxPipeline failed while encoding "
                           f"the references: {one_line(exc)}",
                           "check the reference images; if they are valid, report this with the log.") from exc
    pictures = sum(int(image.shape[0]) for image, weight in references if weight > 0)
    log.info("%s: Redux conditioning from %d reference image(s), prompt balance %.2f (text weight %.2f, "
             "image weight %.2f)", handle.preset.id, pictures, prompt_balance, text_weight, image_weight)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


def redux_generate(handle: PipelineHandle, references: Sequence[Reference], request: GenerationRequest,
                   prompt_balance: float = 0.5) -> GenerationOutput:
    """Generate ``request.batch_size`` images from the references (and ``request.prompt``) with
    the preset's fixed steps and guidance. The family, images, weights, balance, size and the
    Redux weights' location are checked before any weights load."""
    _check_inputs(handle, references, prompt_balance)
    validate_request(request)
    resolve_size(handle, request.width, request.height)
    source = redux_source(handle)
    # Held from encoding to sampling: another generation on this pipeline must not change its
    # LoRA stack in between (generate() takes the same, reentrant, hold).
    with pipeline_cache().use(handle) as entry:
        # Text-encoder LoRAs must be active before Redux encodes the prompt (generate() sets the
        # same stack again; activating is idempotent and cheap).
        activate_loras(entry.pipeline, handle.family_name, handle.loras)
        conditioning = _conditioning(handle, source, references, request.prompt, prompt_balance)
        output = generate(handle, request, conditioning=conditioning)
    output.info.update(redux_weights=[float(weight) for image, weight in references for _ in range(image.shape[0])],
                       prompt_balance=prompt_balance, redux_source=source.describe())
    return output
