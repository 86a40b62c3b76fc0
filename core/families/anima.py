"""Anima: an anime text-to-image model on the Cosmos-Predict2 DiT, conditioned on Qwen3 states
that an "LLM adapter" (``AnimaTextConditioner``) maps onto T5-vocabulary queries. diffusers only
has it as a modular pipeline (``AnimaModularPipeline``): guidance comes from a
``ClassifierFreeGuidance`` guider component, there is no step callback, and the Cosmos
transformer needs the torchvision resize shim. Negative prompts work. Sizes are multiples of 16.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

from . import _tiny
from ._cosmos_shim import ensure_cosmos_transforms
from ._loading import load_pipeline
from ._pipeline import DiffusersFamily
from ._tokenizers import T5_VOCAB_SIZE, qwen_tokenizer, t5_tokenizer
from .base import ModelSource


# Repo id the tiny Anima's index names as its components' source.
TINY_REPO_ID = "diffusers-presets/tiny-anima"


def _quiet_guider_log() -> None:
    # Every guider creation logs that guiders are experimental; nothing a user can act on.
    logging.getLogger("diffusers.guiders.guider_utils").setLevel(logging.ERROR)


class AnimaFamily(DiffusersFamily):
    name = "anima"
    pipeline_class = "AnimaModularPipeline"
    supports_negative = True
    size_multiple = 16
    index_files = ("modular_model_index.json", "model_index.json")
    tiny_save_kwargs = {"overwrite_modular_index": True}

    def load(self, source: ModelSource, dtype: Any) -> Any:
        def from_pretrained(name_or_path: str, dtype: Any, local_files_only: bool, **kwargs: Any) -> Any:
            from diffusers import AnimaModularPipeline

            ensure_cosmos_transforms()
            _quiet_guider_log()
            pipe = AnimaModularPipeline.from_pretrained(name_or_path, local_files_only=local_files_only, **kwargs)
            # A modular pipeline only reads its index; the weights load here.
            pipe.load_components(dtype=dtype, local_files_only=local_files_only)
            return pipe

        # No single-file path: diffusers has no single-file loader for modular pipelines or
        # for the LLM adapter that ComfyUI Anima checkpoints bundle with the transformer.
        return load_pipeline(
            self.name,
            source,
            dtype,
            from_pretrained=from_pretrained,
            from_single_file=None,
            index_files=self.index_files,
        )

    def build_tiny(self, dest: Path) -> None:
        super().build_tiny(dest)
        # save_pretrained records the (temporary) build folder as every component's source.
        # Record a repo id instead, as a pushed modular repo does: loading a folder reads the
        # components found next to the index anyway, and a hub-cache copy of the folder under
        # that id then loads too.
        index_path = Path(dest) / "modular_model_index.json"
        index = json.loads(index_path.read_text())
        for entry in index.values():
            if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], dict):
                entry[2]["pretrained_model_name_or_path"] = TINY_REPO_ID
        index_path.write_text(json.dumps(index, indent=2))

    def tiny_pipeline(self) -> Any:
        from diffusers import AnimaAutoBlocks, AnimaTextConditioner, AutoencoderKLQwenImage, CosmosTransformer3DModel

        _quiet_guider_log()
        pipe = AnimaAutoBlocks().init_pipeline()
        pipe.update_components(
            text_encoder=_tiny.qwen3_encoder(),
            tokenizer=qwen_tokenizer(),
            t5_tokenizer=t5_tokenizer(),
            text_conditioner=AnimaTextConditioner(
                source_dim=_tiny.QWEN_HIDDEN,
                target_dim=32,
                model_dim=32,
                num_layers=2,
                num_attention_heads=4,
                target_vocab_size=T5_VOCAB_SIZE,
                min_sequence_length=16,
            ),
            transformer=CosmosTransformer3DModel(
                in_channels=16,
                out_channels=16,
                num_attention_heads=2,
                attention_head_dim=16,
                num_layers=2,
                mlp_ratio=2.0,
                text_embed_dim=32,
                adaln_lora_dim=4,
                max_size=(4, 32, 32),
                patch_size=(1, 2, 2),
                rope_scale=(1.0, 4.0, 4.0),
                concat_padding_mask=True,
                extra_pos_embed_type=None,
            ),
            vae=AutoencoderKLQwenImage(
                base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
            ),
            scheduler=_tiny.flow_match_scheduler(),
        )
        return pipe

    def accepted_call_args(self, pipe: Any) -> set[str]:
        return {param.name for param in pipe.blocks.inputs if param.name}

    def run(self, pipe: Any, kwargs: dict[str, Any], steps: int, report: Callable[[int, int], None]) -> Any:
        ensure_cosmos_transforms()
        # Guidance is a property of the guider component, not a call argument.
        guidance = float(kwargs.pop("guidance_scale"))
        if pipe.guider.guidance_scale != guidance:
            # Created from the pipeline's spec so it stays a proper from_config component.
            pipe.update_components(guider=pipe.get_component_spec("guider").create(guidance_scale=guidance))

        # No step callback in the modular pipeline: count transformer calls instead. With CFG
        # the guider calls the transformer once per condition (cond + uncond) in each step.
        progress = {"calls": 0, "step": 0}

        def after_forward(module: Any, args: Any, output: Any) -> None:
            progress["calls"] += 1
            if progress["calls"] >= pipe.guider.num_conditions:
                progress["calls"] = 0
                progress["step"] += 1
                report(progress["step"] - 1, steps)

        handle = pipe.transformer.register_forward_hook(after_forward)
        try:
            return pipe(**kwargs, output="images")
        finally:
            handle.remove()

    def used_guidance(self, pipe: Any) -> float:
        return float(pipe.guider.guidance_scale)

    def set_scheduler(self, pipe: Any, scheduler: Any) -> None:
        pipe.update_components(scheduler=scheduler)


FAMILY = AnimaFamily()
