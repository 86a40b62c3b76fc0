"""Chroma: an open, de-distilled derivative of FLUX.1-schnell with a single T5 text encoder
and a small "approximator" replacing Flux's modulation layers (``ChromaPipeline``). It runs
real classifier-free guidance, so negative prompts work. Sizes are multiples of 16."""

from __future__ import annotations

import warnings
from typing import Any

from . import _tiny
from ._pipeline import DiffusersFamily
from ._tokenizers import t5_tokenizer

# diffusers' own ChromaTransformer2DModel builds the deprecated FluxPosEmbed alias, so every
# Chroma load warns about an import that only diffusers can change.
warnings.filterwarnings(
    "ignore", message=r"`FluxPosEmbed` is deprecated", category=FutureWarning, module=r"diffusers\.models\.embeddings"
)


class ChromaFamily(DiffusersFamily):
    name = "chroma"
    pipeline_class = "ChromaPipeline"
    supports_negative = True
    size_multiple = 16
    single_file_denoiser = ("transformer", "ChromaTransformer2DModel")

    def tiny_pipeline(self) -> Any:
        from diffusers import ChromaPipeline, ChromaTransformer2DModel

        transformer = ChromaTransformer2DModel(
            **_tiny.FLUX_TRANSFORMER_DIMS,
            approximator_num_channels=8,
            approximator_hidden_dim=32,
            approximator_layers=1,
        )
        return ChromaPipeline(
            scheduler=_tiny.flow_match_scheduler(dynamic_shifting=True),
            vae=_tiny.autoencoder_kl(latent_channels=16),
            text_encoder=_tiny.t5_encoder(),
            tokenizer=t5_tokenizer(),
            transformer=transformer,
        )


FAMILY = ChromaFamily()
