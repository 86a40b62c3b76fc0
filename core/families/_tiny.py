"""Tiny random-weight components shared by several families' test pipelines.

Sizes follow the offline reference (shared/reference/diffusers-offline.md §3.3): every VAE has
four levels (scale factor 8, like the real ones), so 64 px maps to an 8x8 latent. Callers seed
torch first (see ``_pipeline.seeded_build``) so the weights are the same on every build.
"""

from __future__ import annotations

from typing import Any

from ._tokenizers import CLIP_VOCAB_SIZE, QWEN_VOCAB_SIZE, T5_VOCAB_SIZE

CLIP_HIDDEN = 32
T5_HIDDEN = 32
QWEN_HIDDEN = 16


def autoencoder_kl(latent_channels: int) -> Any:
    """4-level AutoencoderKL: latent_channels 4 (SDXL) or 16 (the Flux VAE that Flux, Chroma
    and Z-Image share, which also has a shift factor and no quant convs)."""
    from diffusers import AutoencoderKL

    flux_vae = dict(scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    return AutoencoderKL(
        **(flux_vae if latent_channels == 16 else {}),
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


def clip_text_encoder(with_projection: bool = False) -> Any:
    """CLIP text encoder matching ``_tokenizers.clip_tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=CLIP_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def t5_encoder() -> Any:
    """T5 encoder matching ``_tokenizers.t5_tokenizer``."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=T5_VOCAB_SIZE,
        d_model=T5_HIDDEN,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config)


def qwen3_encoder() -> Any:
    """Qwen3 text encoder (Z-Image, Anima) matching ``_tokenizers.qwen_tokenizer``."""
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(
        hidden_size=QWEN_HIDDEN,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=QWEN_VOCAB_SIZE,
    )
    return Qwen3Model(config)


# Dimensions shared by the tiny Flux and Chroma transformers (Chroma adds its approximator).
FLUX_TRANSFORMER_DIMS: dict[str, Any] = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=T5_HIDDEN,
    axes_dims_rope=(4, 4, 8),
)


def flow_match_scheduler(dynamic_shifting: bool = False) -> Any:
    """FlowMatchEulerDiscreteScheduler with the shift settings of the real models
    (Flux/Chroma shift by image size; Z-Image and Anima use a fixed shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if dynamic_shifting:
        return FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    return FlowMatchEulerDiscreteScheduler(shift=3.0)
