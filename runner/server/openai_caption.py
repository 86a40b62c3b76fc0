"""Captions for prompt-less variations (optional, off unless ``VISION_MODEL`` is set).

An OpenAI-compatible vision chat endpoint describes the uploaded image and the description
becomes the variation's prompt. Configured by ``VISION_MODEL`` (the model name),
``VISION_MODEL_HOST`` (the server, e.g. ``http://127.0.0.1:11434``; ``/v1/chat/completions`` is
added unless the host already ends in ``/v1``) and ``VISION_MODEL_API_KEY_VARIABLE`` (the *name*
of the variable that holds the key, so the key itself is never in the server's settings). Any
failure is logged and the variation goes on without a prompt; the caller reports it.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

log = logging.getLogger(__name__)

INSTRUCTION = ("Describe this image in one or two sentences as a prompt for an image generator: subject, setting, "
               "style, colours and lighting. Answer with the description only.")
TIMEOUT_S = 60.0


class CaptionFailed(Exception):
    """The vision endpoint gave no caption; the message is safe to show (no key)."""


@dataclass
class VisionSettings:
    model: str = ""
    host: str = ""
    key_variable: str = field(default="", repr=False)

    @classmethod
    def from_env(cls) -> "VisionSettings":
        return cls(os.environ.get("VISION_MODEL", ""), os.environ.get("VISION_MODEL_HOST", ""),
                   os.environ.get("VISION_MODEL_API_KEY_VARIABLE", ""))

    @property
    def enabled(self) -> bool:
        return bool(self.model and self.host)

    @property
    def url(self) -> str:
        host = self.host.rstrip("/")
        return f"{host}/chat/completions" if host.endswith("/v1") else f"{host}/v1/chat/completions"


async def caption(settings: VisionSettings, image: Any) -> str:
    """A prompt describing ``image`` (a PIL image); :class:`CaptionFailed` otherwise."""
    import aiohttp

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    body = {"model": settings.model, "max_tokens": 200, "messages": [{"role": "user", "content": [
        {"type": "text", "text": INSTRUCTION}, {"type": "image_url", "image_url": {"url": data_url}}]}]}
    headers = {}
    key: Optional[str] = os.environ.get(settings.key_variable) if settings.key_variable else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
            async with session.post(settings.url, json=body, headers=headers) as response:
                if response.status != 200:
                    raise CaptionFailed(f"the vision endpoint answered HTTP {response.status}")
                reply = await response.json(content_type=None)
    except CaptionFailed:
        raise
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CaptionFailed(f"the vision endpoint could not be used ({type(exc).__name__})") from None
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise CaptionFailed("the vision endpoint's answer has no choices[0].message.content") from None
    if not isinstance(text, str) or not text.strip():
        raise CaptionFailed("the vision endpoint answered with an empty caption")
    return " ".join(text.split())
