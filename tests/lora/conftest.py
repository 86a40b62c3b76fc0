"""Tiny LoRAs for every family, made once per session, and a generation helper that follows
the sampler's path (prepare_generation right before the family's generate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_civitai import civitai_env, fake_civitai  # noqa: F401  (pytest fixtures)
from tests.lora.tiny_lora import make_tiny_lora

FAMILIES = ("sdxl", "flux", "chroma", "zimage", "anima")


@pytest.fixture(scope="session")
def tiny_loras(tiny_models, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """family -> (lora a, lora b), diffusers-format safetensors made for the tiny pipelines."""
    import torch

    from diffusers_presets.core.families import get_family
    from diffusers_presets.core.families.base import ModelSource

    folder = tmp_path_factory.mktemp("tiny-loras")
    made = {}
    for family in FAMILIES:
        pipe = get_family(family).load(ModelSource("folder", path=tiny_models[family]), torch.float32)
        made[family] = tuple(make_tiny_lora(pipe, family, folder / f"{family}_{name}.safetensors", seed=seed)
                             for name, seed in (("a", 1), ("b", 2)))
    return made
