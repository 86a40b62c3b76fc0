"""Stable Diffusion XL: a UNet latent diffusion model with two CLIP text encoders
(``StableDiffusionXLPipeline``). Classic CFG with negative prompts, Karras-family schedulers,
``clip_skip``, sizes in multiples of 8, and single-file (A1111/ComfyUI) checkpoints with a
diffusers config."""

from __future__ import annotations

from typing import Any

from . import _tiny
from ._pipeline import DiffusersFamily, SamplerTable
from ._tokenizers import clip_tokenizer

# The sampler names presets may use (core.presets.SAMPLERS).
SDXL_SAMPLERS: SamplerTable = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
}


class SDXLFamily(DiffusersFamily):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    supports_negative = True
    supports_clip_skip = True
    size_multiple = 8
    samplers = SDXL_SAMPLERS

    def tiny_pipeline(self) -> Any:
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            # 6 time ids x 8 + the pooled text embedding of text_encoder_2 (32)
            projection_class_embeddings_input_dim=6 * 8 + _tiny.CLIP_HIDDEN,
            # hidden states of both text encoders are concatenated
            cross_attention_dim=2 * _tiny.CLIP_HIDDEN,
            norm_num_groups=8,
        )
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
            steps_offset=1,
        )
        return StableDiffusionXLPipeline(
            vae=_tiny.autoencoder_kl(latent_channels=4),
            text_encoder=_tiny.clip_text_encoder(),
            text_encoder_2=_tiny.clip_text_encoder(with_projection=True),
            tokenizer=clip_tokenizer(),
            tokenizer_2=clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
        )


FAMILY = SDXLFamily()
