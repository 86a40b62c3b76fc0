"""FLUX.1 Redux: an image-prompt adapter for Flux (``FluxPriorReduxPipeline``). A SigLIP
vision encoder plus a small embedder turn a reference image into Flux ``prompt_embeds`` and
``pooled_prompt_embeds``, which then replace the text prompt in a Flux call.

The Redux repo ships no text encoders. Without them the pipeline hard-codes zero text embeds of
real Flux width (4096/768), so the Flux pipeline's own CLIP and T5 are passed in at load time;
this is also what makes the tiny Redux fit the tiny Flux. With text encoders present the
pipeline must be called with ``prompt=""`` (``None`` raises a TypeError).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from . import _tiny
from ._loading import load_pipeline, quiet_progress_bars
from ._pipeline import seeded_build
from .base import ModelSource

log = logging.getLogger(__name__)

NAME = "flux_redux"
_TEXT_COMPONENTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


def load_redux(source: ModelSource, dtype: Any, flux_pipe: Optional[Any] = None) -> Any:
    """Load a FluxPriorReduxPipeline from ``source``. When ``flux_pipe`` is given, its CLIP
    and T5 text encoders and tokenizers are shared with the Redux pipeline."""
    shared = {name: getattr(flux_pipe, name) for name in _TEXT_COMPONENTS} if flux_pipe is not None else {}

    def from_pretrained(name_or_path: str, **kwargs: Any) -> Any:
        from diffusers import FluxPriorReduxPipeline

        return FluxPriorReduxPipeline.from_pretrained(name_or_path, **kwargs, **shared)

    # diffusers has no single-file loader for Redux.
    return load_pipeline(NAME, source, dtype, from_pretrained=from_pretrained, from_single_file=None)


def build_tiny_redux(dest: Path) -> None:
    """Write a tiny random-weight Redux (image encoder, processor, embedder; no text
    encoders, like the real repo) that produces embeds for the tiny Flux."""
    from diffusers import FluxPriorReduxPipeline, ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    quiet_progress_bars()
    hidden = 32
    with seeded_build():
        image_encoder = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=hidden,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
            )
        )
        pipe = FluxPriorReduxPipeline(
            image_encoder=image_encoder,
            feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
            # redux_dim is the SigLIP width; txt_in_features is the tiny Flux's T5 width.
            image_embedder=ReduxImageEncoder(redux_dim=hidden, txt_in_features=_tiny.T5_HIDDEN),
        )
    pipe.save_pretrained(str(dest))
    log.debug("wrote tiny Flux Redux pipeline to %s", dest)
