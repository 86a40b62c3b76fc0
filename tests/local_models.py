"""A machine's model folders for the discovery and sync tests: tiny pipelines as diffusers
folders and hub cache snapshots, single-file checkpoints cut from their weights, a pickle that
must never be opened, and LoRAs with and without sidecars."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from tests.hub_cache import fake_hub_cache

FLUX_LORA_KEY = "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"
SDXL_LORA_KEY = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
AIR = "urn:air:sdxl:lora:civitai:1001@2002"


class _Boom:
    """Unpickling this runs code: it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_lora(path: Path, key: str, width: int = 8) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: np.zeros((4, width), np.float32)}, str(path))
    return path


def build_machine(root: Path, tiny_models: dict[str, Path]) -> dict[str, Path]:
    """Lay out ``root/models`` and ``root/hub``; return the interesting paths."""
    from diffusers_presets.core.lora.library import LoraRecord, write_record

    models = root / "models"
    (models / "diffusers").mkdir(parents=True)
    shutil.copytree(tiny_models["flux"], models / "diffusers" / "my-flux")
    shutil.copytree(tiny_models["anima"], models / "diffusers" / "nested" / "anima-x")
    checkpoints = models / "checkpoints"
    checkpoints.mkdir()
    shutil.copy(tiny_models["sdxl"] / "unet" / "diffusion_pytorch_model.safetensors", checkpoints / "sdxl-unet.safetensors")
    shutil.copy(tiny_models["chroma"] / "transformer" / "diffusion_pytorch_model.safetensors", checkpoints / "chroma.safetensors")
    marker = root / "unpickled"
    (checkpoints / "evil.ckpt").write_bytes(pickle.dumps(_Boom(marker)))
    loras = models / "loras"
    write_lora(loras / "flux-style.safetensors", FLUX_LORA_KEY)
    sdxl = write_lora(loras / "civitai" / "sdxl-detail.safetensors", SDXL_LORA_KEY, width=2048)
    write_record(sdxl, LoraRecord(sha256="0" * 64, size=0, mtime_ns=0, air=AIR, model_id=1001, version_id=2002,
                                  base_model="Illustrious", trained_words=("detailed", "sharp")))
    hub = root / "hub"
    fake_hub_cache(hub, "tiny-org/tiny-zimage", tiny_models["zimage"])
    return {"models": models, "hub": hub, "marker": marker, "sdxl_lora": sdxl}
