"""FLUX.1 (dev/schnell and fine-tunes): a guidance-distilled rectified-flow transformer with
CLIP + T5 text encoders (``FluxPipeline``). The guidance value feeds the model's guidance
embedding instead of running CFG, so there is no negative prompt. Sizes are multiples of 16."""

from __future__ import annotations

from typing import Any

from . import _tiny
from ._pipeline import DiffusersFamily
from ._tokenizers import clip_tokenizer, t5_tokenizer


class FluxFamily(DiffusersFamily):
    name = "flux"
    pipeline_class = "FluxPipeline"
    # FluxPipeline only takes negatives together with true_cfg_scale (real CFG at twice the
    # cost), which presets do not expose; guidance_scale is the distilled guidance.
    supports_negative = False
    size_multiple = 16
    single_file_denoiser = ("transformer", "FluxTransformer2DModel")

    def tiny_pipeline(self) -> Any:
        from diffusers import FluxPipeline, FluxTransformer2DModel

        transformer = FluxTransformer2DModel(
            **_tiny.FLUX_TRANSFORMER_DIMS, pooled_projection_dim=_tiny.CLIP_HIDDEN, guidance_embeds=True
        )
        return FluxPipeline(
            scheduler=_tiny.flow_match_scheduler(dynamic_shifting=True),
            vae=_tiny.autoencoder_kl(latent_channels=16),
            text_encoder=_tiny.clip_text_encoder(),
            tokenizer=clip_tokenizer(),
            text_encoder_2=_tiny.t5_encoder(),
            tokenizer_2=t5_tokenizer(),
            transformer=transformer,
        )


FAMILY = FluxFamily()
