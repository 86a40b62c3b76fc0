"""ImagesApiInput / ImagesApiOutput: the Images API request that queued a graph, inside it.

The OpenAI-compatible Images API (``runner/server/openai_api.py``) turns each request into a
graph that ends in this node, on the same queue as any prompt (the runner's, or ComfyUI's).
ImagesApiInput gives the graph the images the request uploaded; ImagesApiOutput encodes the
results in the requested format and keeps the bytes in memory, under the request id, for the
waiting request. Nothing is written to disk. A request id nobody waits for
(the client went away) is dropped, so the memory cannot fill up.
"""

from __future__ import annotations

import io
import threading
from typing import Any, Optional

from .common import CATEGORY

FORMATS = ("png", "jpeg", "webp")

_lock = threading.Lock()
_results: dict[str, Optional[list[bytes]]] = {}
_inputs: dict[str, tuple[Any, Any]] = {}  # request id -> (RGB PIL image, RGBA PIL mask or None) uploaded


def expect(request_id: str) -> None:
    """Announce a request whose images the node should keep."""
    with _lock:
        _results[request_id] = None


def take(request_id: str) -> Optional[list[bytes]]:
    """The encoded images of ``request_id`` (None if the node did not run), forgetting them
    and the request's input images."""
    with _lock:
        _inputs.pop(request_id, None)
        return _results.pop(request_id, None)


def provide(request_id: str, image: Any, mask: Any = None) -> None:
    """The image (RGB PIL, or a list of them: several references) and optional mask (PIL with
    alpha) a request uploaded, for :class:`ImagesApiInput`."""
    with _lock:
        _inputs[request_id] = (image, mask)


def encode(pixels: Any, output_format: str, compression: int) -> bytes:
    """One image ([H,W,3] float 0..1) as PNG, JPEG or WebP (see :func:`encode_picture`)."""
    import numpy as np
    from PIL import Image

    picture = Image.fromarray(np.clip(255.0 * pixels.cpu().numpy(), 0, 255).astype(np.uint8))
    return encode_picture(picture, output_format, compression)


def encode_picture(picture: Any, output_format: str, compression: int) -> bytes:
    """A PIL image as PNG, JPEG or WebP; ``compression`` 0-100 is OpenAI's
    ``output_compression`` (100 = best quality) for JPEG and WebP."""
    buffer = io.BytesIO()
    if output_format == "png":
        picture.save(buffer, format="PNG", compress_level=1)
    elif output_format == "jpeg":
        picture.convert("RGB").save(buffer, format="JPEG", quality=max(1, min(compression, 95)))
    else:
        picture.save(buffer, format="WEBP", quality=compression, lossless=compression >= 100)
    return buffer.getvalue()


class ImagesApiOutput:
    TITLE = "Images API Output (Diffusers)"
    DESCRIPTION = ("Returns images to the OpenAI-compatible Images API request that queued this graph. Used by the "
                   "/v1/images routes; in a hand-made workflow it does nothing useful.")
    CATEGORY = CATEGORY + "/api"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "output"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to return."}),
                # Unique per request, so the engine's cache never replays another request's output.
                "request_id": ("STRING", {"default": "", "tooltip": "The Images API request id."}),
                "output_format": (list(FORMATS), {"default": "png",
                                                  "tooltip": "The file format of the returned images."}),
                "output_compression": ("INT", {"default": 100, "min": 0, "max": 100,
                                               "tooltip": "JPEG/WebP quality, 100 = best (OpenAI's "
                                                          "output_compression)."}),
            },
        }

    def output(self, images: Any, request_id: str, output_format: str, output_compression: int) -> dict:
        encoded = [encode(image, output_format, output_compression) for image in images]
        with _lock:
            if request_id in _results:
                _results[request_id] = encoded
        return {"ui": {"images_api": [{"request_id": request_id, "count": len(encoded)}]}}


class ImagesApiInput:
    TITLE = "Images API Input (Diffusers)"
    DESCRIPTION = ("Gives the graph the image (and mask) uploaded with the OpenAI-compatible Images API request that "
                   "queued it. Used by /v1/images/edits and /variations; in a hand-made workflow it has nothing to "
                   "give.")
    CATEGORY = CATEGORY + "/api"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The uploaded image(s), float32 [count, height, width, 3] in 0..1.",
                       "1 where the uploaded mask is transparent (OpenAI: the area to edit), else 0; all 0 "
                       "without a mask.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"request_id": ("STRING", {"default": "", "tooltip": "The Images API request id."})}}

    def load(self, request_id: str) -> tuple:
        import numpy as np
        import torch

        from ..core.errors import PresetsError

        with _lock:
            upload = _inputs.get(request_id)
        if upload is None:
            raise PresetsError("input_invalid", f"no Images API request {request_id!r} is waiting for this graph.",
                               "use this node only in graphs the /v1/images routes queue.")
        image, mask = upload
        pictures = image if isinstance(image, list) else [image]
        size = pictures[0].size  # a batch has one size; Redux's encoder resizes its references anyway
        pixels = np.stack([np.asarray(picture.convert("RGB").resize(size), dtype=np.float32) / 255.0
                           for picture in pictures])
        if mask is None:
            repaint = np.zeros(pixels.shape[:3], dtype=np.float32)
        else:
            repaint = 1.0 - np.asarray(mask.convert("RGBA").getchannel("A"), dtype=np.float32)[None] / 255.0
        return torch.from_numpy(pixels), torch.from_numpy(repaint)
