"""Live previews: step latents → a small RGB image → ComfyUI's binary websocket frames.

The engine calls ``PromptService.preview(node_id, latent, family)`` once per sampling step from
the worker thread, with ``latent`` the first image's latent as ``(channels, height, width)``
(Flux-style packed latents already unpacked by the family). Everything after that lives here:
the decode, the frame encoding and the rate limit. Anima's modular pipeline has no step
callback, so it shows no previews.

Decoding is ``latent2rgb``: a fixed linear map from latent channels to RGB. SDXL uses the
factors from diffusers' callback guide (on the raw latents of the denoising loop). Families
without published factors get a projection of the latent onto its own three main components:
the layout shows, the colours are false.
"""

from __future__ import annotations

import io
import json
import struct
import time
from typing import Any, Optional

# BinaryEventTypes in ComfyUI's protocol.
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
JPEG, PNG = 1, 2

MAX_PREVIEW_SIZE = 512
# rows = latent channels, columns = R, G, B (0..255 scale), then the bias.
LATENT_RGB_FACTORS: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, float, float]]] = {
    "sdxl": (((60, 60, 60), (-60, -5, 10), (25, 15, -5), (-70, -50, -35)), (150, 140, 130)),
}


def latent_to_image(latent: Any, family: str) -> Any:
    """A PIL image of one latent ``(C, H, W)`` (a torch tensor or a numpy array)."""
    import numpy as np
    from PIL import Image

    array = latent.detach().float().cpu().numpy() if hasattr(latent, "detach") else np.asarray(latent, dtype=np.float32)
    channels, height, width = array.shape
    pixels = array.reshape(channels, -1).T  # (H*W, C)
    factors = LATENT_RGB_FACTORS.get(family)
    if factors is not None and len(factors[0]) == channels:
        rgb = pixels @ np.asarray(factors[0], dtype=np.float32) + np.asarray(factors[1], dtype=np.float32)
    else:
        centered = pixels - pixels.mean(axis=0)
        _, _, components = np.linalg.svd(centered, full_matrices=False)
        projected = centered @ components[:3].T
        if projected.shape[1] < 3:
            projected = np.pad(projected, ((0, 0), (0, 3 - projected.shape[1])))
        scale = np.abs(projected).max(axis=0) + 1e-6
        rgb = 127.5 + 127.5 * projected / scale
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8).reshape(height, width, 3))
    # latents are 1/8 of the image: show them at image scale, within the preview limit
    scale = min(8, MAX_PREVIEW_SIZE / max(height, width))
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.BILINEAR)


def encode_jpeg(image: Any, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def frame(jpeg: bytes, metadata: Optional[dict] = None) -> bytes:
    """ComfyUI's binary preview frame: type 4 (JSON metadata, then the JPEG) when ``metadata``
    is given, else type 1 (the image format, then the JPEG)."""
    if metadata is None:
        return struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg
    meta = json.dumps({**metadata, "image_type": "image/jpeg"}).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg


def decode_frame(frame: bytes) -> tuple[int, Optional[dict], bytes]:
    """(type, metadata or None, image bytes): the inverse of :func:`frame`."""
    kind, second = struct.unpack(">II", frame[:8])
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        return kind, json.loads(frame[8:8 + second]), frame[8 + second:]
    return kind, None, frame[8:]


class Throttle:
    """At most one preview per ``interval`` seconds: decoding every step of a fast sampler
    would cost more than the step. The first preview of each prompt always passes, so a short
    run shows one even right after another prompt's."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._last = float("-inf")
        self._key: Optional[str] = None

    def ready(self, key: Optional[str] = None) -> bool:
        now = time.monotonic()
        if key == self._key and now - self._last < self.interval:
            return False
        self._key, self._last = key, now
        return True
