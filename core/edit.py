"""Image edits: img2img, and inpainting with a mask, on a preset's loaded pipeline.

``edit_generate(handle, request, image, mask, strength)`` is the one path (the ImageEdit node,
the Images API's edits and non-Flux variations). The family's diffusers Img2Img / Inpaint
pipeline is built from the loaded text-to-image pipeline with ``from_pipe``: the same modules,
no second copy of the weights, LoRA adapters included. It is built once per pipeline and
kept on it. Steps, CFG and sampler are the preset's; ``strength`` (how far from the input, 0-1)
runs about ``steps × strength`` of them (:func:`edit_steps`), as diffusers does.

Masks follow ComfyUI's MASK (and OpenAI's alpha rule, since LoadImage's MASK is 1 − alpha):
1 = repaint, 0 = keep.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from .errors import PresetsError
from .families import DropMessage
from .families._loading import quiet_step_bars
from .handle import PipelineHandle
from .images import check_image, to_pil_images
from .sampler import DerivedCall, GenerationOutput, GenerationRequest, generate, resolve_size, validate_request

log = logging.getLogger(__name__)

# family -> (img2img class, inpaint class or None) in diffusers; a family missing here has neither.
EDIT_PIPELINES: dict[str, tuple[str, Optional[str]]] = {
    "sdxl": ("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
    "flux": ("FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    # diffusers 0.42's ChromaInpaintPipeline reads a config field Chroma's transformer lacks.
    "chroma": ("ChromaImg2ImgPipeline", None),
    "zimage": ("ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
}
_DERIVED_ATTR = "_diffusers_presets_edit_pipes"

# from_pipe and the SDXL edit pipelines' VAE upcast call ``.to(dtype)`` on modules the loader
# already placed, and diffusers warns each time; the user would read it as a problem with
# their model.
logging.getLogger("diffusers.models.modeling_utils").addFilter(
    DropMessage(r"There are modules in \w+ that should be kept in float32"))


def edit_families(inpaint: bool) -> list[str]:
    """The families with an inpaint (or an img2img) pipeline."""
    return [family for family, classes in EDIT_PIPELINES.items() if classes[1 if inpaint else 0]]


def check_editable(family: str, inpaint: bool) -> str:
    """The diffusers class for this kind of edit; ``family_mismatch`` naming the families that
    have one when ``family`` has none."""
    name = EDIT_PIPELINES.get(family, (None, None))[1 if inpaint else 0]
    if name is None:
        kind = "inpaint" if inpaint else "img2img"
        raise PresetsError("family_mismatch", f"the {family} family has no {kind} pipeline.",
                           f"use a preset of a family with one: {', '.join(edit_families(inpaint))}.")
    return name


def derived_pipeline(pipe: Any, class_name: str) -> Any:
    """The ``class_name`` pipeline sharing ``pipe``'s modules (built once, kept on ``pipe``)."""
    import diffusers

    derived = getattr(pipe, _DERIVED_ATTR, None)
    if derived is None:
        derived = {}
        setattr(pipe, _DERIVED_ATTR, derived)
    if class_name not in derived:
        derived[class_name] = getattr(diffusers, class_name).from_pipe(pipe)
        quiet_step_bars(derived[class_name])
    return derived[class_name]


def edit_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` an edit of ``strength`` runs (diffusers skips the first
    ``int(steps × (1 − strength))``)."""
    return steps - int(steps * (1.0 - strength))


def _mask_image(mask: Any, width: int, height: int) -> Any:
    """MASK [H,W] or [B,H,W] (1 = repaint) → the L-mode PIL image diffusers expects (white = repaint)."""
    import torch
    from PIL import Image

    if mask.ndim == 3:
        mask = mask[0]
    if mask.ndim != 2:
        raise PresetsError("input_invalid", f"the mask has shape {tuple(mask.shape)}; a MASK is [height, width].",
                           "connect LoadImage's MASK output (or a mask node's).")
    pixels = (mask.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, mode="L").resize((width, height), Image.Resampling.NEAREST)


def edit_generate(handle: PipelineHandle, request: GenerationRequest, image: Any, mask: Optional[Any] = None,
                  strength: float = 0.6) -> GenerationOutput:
    """``request.batch_size`` edits of the first image of ``image`` (IMAGE [B,H,W,3]), repainting
    where ``mask`` is 1 (the whole image without a mask)."""
    from PIL import Image

    preset = handle.preset
    class_name = check_editable(preset.family, mask is not None)
    check_image(image, "the image")
    validate_request(request)
    if not 0.0 < strength <= 1.0:
        raise PresetsError("input_invalid", f"strength {strength} is outside (0, 1].",
                           "use a strength above 0 (a little change) up to 1 (a new image).")
    width, height = resolve_size(handle, request.width, request.height)
    kwargs: dict[str, Any] = {"image": to_pil_images(image[:1])[0].resize((width, height), Image.Resampling.LANCZOS),
                              "strength": strength}
    if mask is not None:
        kwargs["mask_image"] = _mask_image(mask, width, height)
    log.info("%s: %s with %s, strength %g", preset.id, "inpaint" if mask is not None else "img2img", class_name,
             strength)
    call = DerivedCall(lambda pipe: derived_pipeline(pipe, class_name), kwargs, edit_steps(preset.steps, strength))
    output = generate(handle, request, derived=call)
    output.info.update(pipeline=class_name, strength=strength)
    return output
