"""Live previews: a step latent → a small RGB picture, cheaply (no VAE).

``latent2rgb``: a fixed linear map from latent channels to RGB. SDXL uses the factors from
diffusers' callback guide (on the raw latents of the denoising loop). Families without
published factors get a projection of the latent onto its own three main components: the
layout shows, the colours are false. The runner's server sends these pictures over its
websocket; inside ComfyUI they ride on its progress bar onto the sampler node.
"""

from __future__ import annotations

from typing import Any

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
