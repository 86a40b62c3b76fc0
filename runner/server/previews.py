"""Live previews on the server: step latents → ComfyUI's binary websocket frames.

The engine calls ``PromptService.preview(node_id, latent, family)`` once per sampling step from
the worker thread, with ``latent`` the first image's latent as ``(channels, height, width)``
(Flux-style packed latents already unpacked by the family). The picture comes from
``core.previews.latent_to_image``; the frame encoding and the rate limit live here. Anima's
modular pipeline has no step callback, so it shows no previews.
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
