"""Stable Diffusion XL: a UNet latent diffusion model with two CLIP text encoders
(``StableDiffusionXLPipeline``). Classic CFG with negative prompts, the Euler, Euler a,
DPM++ 2M and DDIM samplers, clip skip, sizes in multiples of 8, and single-file
(A1111/ComfyUI) checkpoints read with a diffusers config."""

from __future__ import annotations

from typing import Any, Optional

from ..errors import PresetsError
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
    size_multiple = 8
    samplers = SDXL_SAMPLERS

    def clip_skip_arg(self, pipe: Any, clip_skip: int) -> Optional[int]:
        """Presets count clip skip the A1111/Civitai way: "clip skip 2" is the penultimate CLIP
        layer, which SDXL uses anyway (A1111 forces it for SDXL). diffusers' SDXL ``clip_skip``
        counts the layers skipped beyond the penultimate one, i.e. preset value - 2."""
        if clip_skip <= 2:
            return None
        # diffusers applies it to both text encoders.
        encoders = (pipe.text_encoder, pipe.text_encoder_2)
        layers = min(encoder.config.num_hidden_layers for encoder in encoders if encoder is not None)
        if clip_skip > layers + 1:
            raise PresetsError(
                "preset_invalid",
                f"clip_skip {clip_skip} skips more layers than this model's text encoder has ({layers}).",
                f"use a clip_skip from 1 to {layers + 1}, or null.",
            )
        return clip_skip - 2

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
