"""PresetLoader → VramProfile → FixedSampler on the tiny models, through the node classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffusers_presets.core.errors import Interrupted, PresetsError
from diffusers_presets.core.host import RunContext, run_scope
from diffusers_presets.nodes.fixed_sampler import FixedSampler
from diffusers_presets.nodes.preset_loader import PresetLoader
from diffusers_presets.nodes.vram_profile import VramProfile
from tests.expected import SCHEDULER_CLASS, SHIPPED


def run(preset: str, *, prompt: str = "a red fox", seed: int = 1, batch: int = 1, size: int = 64,
        negative: str = "", override: str = "tiny", profile: str = "auto") -> torch.Tensor:
    (handle,) = PresetLoader().load(preset, override)
    (handle,) = VramProfile().apply(handle, profile)
    (images,) = FixedSampler().sample(handle, prompt, negative, seed, size, size, batch)
    return images


@pytest.mark.parametrize("preset_id", sorted(SHIPPED))
def test_every_preset_on_tiny_runs_its_fixed_steps_and_cfg(preset_id, host, tiny_models, fresh_cache, caplog) -> None:
    _family, steps, cfg, _sampler = SHIPPED[preset_id]
    with caplog.at_level("INFO"):
        images = run(preset_id, negative="blurry")
    assert images.dtype == torch.float32 and images.shape == (1, 64, 64, 3)
    assert 0.0 <= images.min() and images.max() <= 1.0 and not torch.isnan(images).any()
    assert [value for value, _ in host.progress_events] == list(range(1, steps + 1))
    assert all(total == steps for _, total in host.progress_events)
    assert f"{steps} steps, cfg {cfg}" in caplog.text  # the guidance read back from the pipeline
    (handle,) = PresetLoader().load(preset_id, "tiny")
    assert type(fresh_cache.get(handle).scheduler).__name__ == SCHEDULER_CLASS[preset_id]


def test_same_seed_same_image_other_seed_other_image_and_batches(host, tiny_models, fresh_cache) -> None:
    first = run("demo/sdxl", seed=7)
    assert torch.equal(first, run("demo/sdxl", seed=7))
    assert not torch.equal(first, run("demo/sdxl", seed=8))
    batch = run("demo/sdxl", seed=7, batch=2)
    assert batch.shape == (2, 64, 64, 3)
    # Image i of a batch uses seed + i; batched matmuls round differently, hence the tolerance.
    assert torch.allclose(batch[0], first, atol=2e-3)
    assert torch.allclose(batch[1], run("demo/sdxl", seed=8), atol=2e-3)


def test_ten_generations_load_the_pipeline_once(host, tiny_models, fresh_cache) -> None:
    for index in range(10):
        run("flux/schnell", prompt=f"prompt number {index}", seed=index)
    assert fresh_cache.loads == 1


def test_size_that_breaks_the_family_rule(host, tiny_models, fresh_cache) -> None:
    with pytest.raises(PresetsError) as info:
        run("flux/dev", size=72)
    assert info.value.code == "size_invalid"
    assert "multiple of 16" in info.value.message and "64 or 80" in info.value.fix
    assert fresh_cache.loads == 0  # refused before any weights were read


def test_a_batch_must_not_run_past_the_last_seed(host, tiny_models, fresh_cache) -> None:
    from diffusers_presets.core.sampler import MAX_SEED, GenerationRequest, validate_request

    validate_request(GenerationRequest("a fox", seed=MAX_SEED - 1, batch_size=2))  # seeds MAX-1, MAX: fine
    with pytest.raises(PresetsError) as info:
        run("demo/sdxl", seed=MAX_SEED, batch=2)  # image 1 would need seed MAX + 1
    assert info.value.code == "input_invalid"
    assert f"0..{MAX_SEED - 1}" in info.value.message and str(MAX_SEED - 1) in info.value.fix
    assert fresh_cache.loads == 0  # refused before any weights were read


def test_unknown_preset(host) -> None:
    with pytest.raises(PresetsError) as info:
        PresetLoader().load("flux/turbo")
    assert info.value.code == "preset_not_found"


def test_missing_local_model_says_where_it_looked(host, tmp_path: Path) -> None:
    with pytest.raises(PresetsError) as info:
        PresetLoader().load("sdxl/illustrious", str(tmp_path / "no-such-folder"))
    assert info.value.code == "model_not_found"
    assert "no-such-folder" in info.value.message and info.value.fix


def test_hub_weights_not_in_cache_fail_fast_without_network(host, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(PresetsError) as info:
        PresetLoader().load("flux/dev")
    assert info.value.code == "model_not_found"
    assert "black-forest-labs/FLUX.1-dev" in info.value.message and "hf download" in info.value.fix


def test_local_diffusers_folder_override(host, tiny_models, fresh_cache) -> None:
    images = run("zimage/turbo", override=str(tiny_models["zimage"]))
    assert images.shape == (1, 64, 64, 3)


def test_interrupt_stops_between_steps(host, tiny_models, fresh_cache) -> None:
    def interrupt_at_step_two(value: int, total: int) -> None:
        if value == 2:
            interrupted_run.request_interrupt()

    interrupted_run = RunContext(interrupt_at_step_two)
    with run_scope(interrupted_run), pytest.raises(Interrupted):
        run("demo/flux")
    assert run("demo/flux").shape == (1, 64, 64, 3)  # the next run is unaffected


def test_bad_user_preset_file_is_reported(host, tmp_path: Path, monkeypatch) -> None:
    user = tmp_path / "user-presets"
    (user / "flux").mkdir(parents=True)
    (user / "flux" / "mine.yaml").write_text("steps: -1\n")
    monkeypatch.setenv("PRESETS_DIR", str(user))
    with pytest.raises(PresetsError) as info:
        PresetLoader().load("flux/mine")
    assert info.value.code == "preset_invalid" and "mine.yaml" in info.value.message


def test_editing_a_preset_file_changes_the_loader_fingerprint(host, tmp_path: Path, monkeypatch) -> None:
    user = tmp_path / "user-presets"
    (user / "flux").mkdir(parents=True)
    monkeypatch.setenv("PRESETS_DIR", str(user))
    before = PresetLoader.IS_CHANGED("flux/dev")
    assert PresetLoader.IS_CHANGED("flux/dev") == before
    (user / "flux" / "dev.yaml").write_text("width: 512\n")
    assert PresetLoader.IS_CHANGED("flux/dev") != before
    from diffusers_presets.core.presets import registry

    assert registry().get("flux/dev").width == 512  # the edited file is read without a restart


def test_single_file_config_missing_from_cache_names_the_download(host, tiny_models, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    checkpoint = tmp_path / "my-finetune.safetensors"
    checkpoint.write_bytes(b"not read before the config is found")
    with pytest.raises(PresetsError) as info:
        PresetLoader().load("sdxl/illustrious", str(checkpoint))
    assert info.value.code == "model_not_found"
    assert "stabilityai/stable-diffusion-xl-base-1.0" in info.value.message and "hf download" in info.value.fix


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")  # inside diffusers
def test_preset_weights_from_the_local_hugging_face_cache(host, tiny_models, fresh_cache, monkeypatch, tmp_path) -> None:
    """The path a real model takes: a repo id resolved from the local cache, offline. Anima's
    modular index (modular_model_index.json) counts as a complete pipeline."""
    from huggingface_hub import constants

    from diffusers_presets.core.families.anima import TINY_REPO_ID
    from diffusers_presets.core.sources import source_present
    from tests.hub_cache import fake_hub_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path / "hub", TINY_REPO_ID, tiny_models["anima"])
    (handle,) = PresetLoader().load("anima/preview", f"{TINY_REPO_ID}@main")
    assert handle.source.kind == "hub" and source_present(handle.preset)
    (images,) = FixedSampler().sample(handle, "a fox", "", 1, 64, 64, 1)
    assert images.shape == (1, 64, 64, 3)
