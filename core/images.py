"""ComfyUI ``IMAGE`` tensors ([batch, height, width, 3] floats in 0..1) and PIL images:
checks and conversions shared by FluxRedux, the runner's nodes and the server's APIs."""

from __future__ import annotations

from typing import Any

from .errors import PresetsError


def check_image(image: Any, label: str, min_side: int = 1) -> None:
    """Raise ``input_invalid`` unless ``image`` is a ComfyUI IMAGE: float [B,H,W,3], B ≥ 1,
    sides of at least ``min_side`` pixels, finite values. ``label`` names the input."""
    import torch

    def invalid(what: str, fix: str) -> PresetsError:
        return PresetsError("input_invalid", f"{label} {what}", fix)

    if not isinstance(image, torch.Tensor):
        raise invalid(f"is a {type(image).__name__}, not an IMAGE.", "connect an IMAGE output (e.g. LoadImage's IMAGE).")
    shape = tuple(image.shape)
    if image.ndim == 3 and shape[-1] == 3:
        raise invalid(f"has shape {shape}: an IMAGE needs a batch dimension, [batch, height, width, 3].",
                      "add the batch dimension (image[None]) or pass the node's IMAGE output unchanged.")
    if image.ndim in (2, 3):
        raise invalid(f"has shape {shape}: that is a MASK ([batch, height, width]), not an IMAGE "
                      "([batch, height, width, 3]).",
                      "connect LoadImage's IMAGE output (the first one), not its MASK.")
    if image.ndim != 4:
        raise invalid(f"has shape {shape}; an IMAGE is [batch, height, width, 3].", "connect an IMAGE output.")
    batch, height, width, channels = shape
    if channels != 3:
        raise invalid(f"has {channels} channel(s); it needs RGB images with 3.",
                      "drop the alpha channel or convert the image to RGB before FluxRedux.")
    if batch == 0:
        raise invalid("is an empty batch (0 images).", "give it at least one image.")
    if min(height, width) < min_side:
        raise invalid(f"is {width}x{height} pixels; references need at least {min_side}x"
                      f"{min_side}.", "use a larger image.")
    if not image.is_floating_point():
        raise invalid(f"has dtype {image.dtype}; IMAGE values are floats in 0..1.",
                      "convert it to float (value / 255) or load it with LoadImage.")
    if not torch.isfinite(image).all():
        raise invalid("contains NaN or infinite values.", "check the nodes that produced it.")


def to_pil_images(images: Any) -> list:
    """IMAGE [B,H,W,3] 0..1 → PIL images, the input FluxPriorReduxPipeline's processor expects
    (it rescales by 1/255, so float tensors in 0..1 would come out black)."""
    import torch
    from PIL import Image

    pixels = (images.detach().to("cpu", torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(frame) for frame in pixels.numpy()]

