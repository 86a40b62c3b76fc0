"""Tiny random LoRAs for the tiny pipelines of every family (tests, benchmarks, the CI workflow).

A peft LoRA (rank 4, non-zero B so it changes the output) on the attention projections of the
family's denoiser, saved as diffusers-format safetensors (``unet.`` / ``transformer.`` keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DENOISER = {"sdxl": "unet", "flux": "transformer", "chroma": "transformer", "zimage": "transformer",
            "anima": "transformer"}
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_tiny_lora(pipe: Any, family: str, dest: Path, seed: int = 0, rank: int = 4,
                   metadata: dict[str, str] | None = None) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    prefix = DENOISER[family]
    model = getattr(pipe, prefix)
    name = f"tiny_{seed}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=False),
                          adapter_name=name)
        # Bigger B than peft's default so that the tiny models visibly change.
        state = {f"{prefix}.{key}": value.detach().clone() * (3.0 if "lora_B" in key else 1.0)
                 for key, value in get_peft_model_state_dict(model, adapter_name=name).items()}
    model.delete_adapters(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dest), metadata=metadata)
    return dest
