"""Stand-in for the one torchvision call Cosmos (and so Anima) makes.

``CosmosTransformer3DModel.forward`` resizes its padding mask with
``torchvision.transforms.functional.resize(..., interpolation=NEAREST)``. torchvision must not
be installed next to the CPU torch (it breaks diffusers' imports or pulls in a CUDA torch), so
the diffusers module gets a tiny ``transforms`` object doing the same nearest resize with
``torch.nn.functional.interpolate``.
"""

from __future__ import annotations

import logging
from enum import Enum
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)


class InterpolationMode(Enum):
    NEAREST = "nearest"


def resize(tensor: Any, size: list[int], interpolation: InterpolationMode = InterpolationMode.NEAREST, **_: Any) -> Any:
    """Nearest-neighbour resize of the last two dimensions of a [..., H, W] tensor."""
    import torch.nn.functional as F

    if interpolation is not InterpolationMode.NEAREST:
        raise ValueError(f"the torchvision shim only supports nearest resizing, not {interpolation}")
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])
    out = F.interpolate(flat.float(), size=tuple(size), mode="nearest").to(tensor.dtype)
    return out.reshape(*lead, *out.shape[-2:])


def ensure_cosmos_transforms() -> None:
    """Give diffusers' Cosmos transformer module a ``transforms`` shim unless it already has
    one (real torchvision, or the shim from an earlier call)."""
    from diffusers.models.transformers import transformer_cosmos

    if hasattr(transformer_cosmos, "transforms"):
        return
    transformer_cosmos.transforms = SimpleNamespace(
        functional=SimpleNamespace(resize=resize), InterpolationMode=InterpolationMode
    )
    log.debug("installed the torchvision resize shim for diffusers' Cosmos transformer")
