"""Adapters that left the stack stay loaded for a quick comeback, but only up to
MAX_IDLE_ADAPTERS: a long session of swaps must not pile adapters onto the pipeline."""

from __future__ import annotations

from pathlib import Path

from diffusers_presets.core.handle import LoraSpec
from diffusers_presets.core.lora.apply import MAX_IDLE_ADAPTERS, activate_loras, loaded_adapters
from tests.lora.helpers import handle_for
from tests.lora.tiny_lora import make_tiny_lora


def test_idle_adapters_beyond_the_limit_are_unloaded_oldest_first(host, tiny_models, fresh_cache,
                                                                     tmp_path: Path) -> None:
    pipe = handle_for("sdxl").pipeline()
    specs = [LoraSpec(adapter_name=f"swap_{index}",
                      path=make_tiny_lora(pipe, "sdxl", tmp_path / f"swap_{index}.safetensors", seed=10 + index))
             for index in range(MAX_IDLE_ADAPTERS + 3)]
    for spec in specs:  # one LoRA at a time, as a user swapping LoRAs in a loader does
        activate_loras(pipe, "sdxl", (spec,))
    kept = loaded_adapters(pipe)
    assert len(kept) == MAX_IDLE_ADAPTERS + 1  # the active one and the most recent idle ones
    assert kept == {spec.adapter_name for spec in specs[-(MAX_IDLE_ADAPTERS + 1):]}
    activate_loras(pipe, "sdxl", (specs[-3],))  # an idle adapter comes back without a reload
    assert loaded_adapters(pipe) == kept
