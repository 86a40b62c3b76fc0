"""Z-Image (Tongyi-MAI): a single-stream rectified-flow DiT conditioned on a Qwen3 text
encoder (``ZImagePipeline``). It runs classifier-free guidance with negative prompts when
guidance_scale > 0 (the Turbo model is meant for guidance 0). Sizes must be multiples of 16."""

from __future__ import annotations

from typing import Any

from . import _tiny
from ._pipeline import DiffusersFamily
from ._tokenizers import qwen_tokenizer


class ZImageFamily(DiffusersFamily):
    name = "zimage"
    pipeline_class = "ZImagePipeline"
    supports_negative = True  # ZImagePipeline takes negative_prompt (used when guidance_scale > 0)
    size_multiple = 16
    single_file_denoiser = ("transformer", "ZImageTransformer2DModel")

    def tiny_pipeline(self) -> Any:
        import torch
        from diffusers import ZImagePipeline, ZImageTransformer2DModel

        transformer = ZImageTransformer2DModel(
            in_channels=16,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=_tiny.QWEN_HIDDEN,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
        # The pad tokens are created with torch.empty and never initialised: garbage or NaN.
        with torch.no_grad():
            transformer.x_pad_token.fill_(1.0)
            transformer.cap_pad_token.fill_(1.0)
        return ZImagePipeline(
            scheduler=_tiny.flow_match_scheduler(),
            vae=_tiny.autoencoder_kl(latent_channels=16),
            text_encoder=_tiny.qwen3_encoder(),
            tokenizer=qwen_tokenizer(),
            transformer=transformer,
        )


FAMILY = ZImageFamily()
