"""Hugging Face LoRA files resolve through huggingface_hub's cache; offline (HF_HUB_OFFLINE) a
cached file is used as is and a missing one is a coded error that says how to download it."""

from __future__ import annotations

import pytest

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.lora.resolve import resolve_lora
from tests.fake_civitai import safetensors_bytes
from tests.hub_cache import fake_hub_cache

REPO = "someone/pixel-loras"


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty hub cache in tmp_path and offline mode. huggingface_hub reads HF_HUB_CACHE and
    HF_HUB_OFFLINE once, at import: the environment is set for child processes, the constants
    for this one."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never reached: offline
    return cache


def test_a_cached_hub_file_resolves_offline(offline_hub, host, tmp_path) -> None:
    snapshot = tmp_path / "snapshot"
    (snapshot / "styles").mkdir(parents=True)
    data = safetensors_bytes(3000, seed=11)
    (snapshot / "styles" / "pixel.safetensors").write_bytes(data)
    fake_hub_cache(offline_hub, REPO, snapshot)
    for reference in (f"hf://{REPO}/styles/pixel.safetensors",
                      f"https://huggingface.co/{REPO}/resolve/main/styles/pixel.safetensors"):
        lora = resolve_lora(reference)
        assert lora.path.is_relative_to(offline_hub) and lora.path.read_bytes() == data
        assert lora.label == f"Hugging Face LoRA {REPO}/styles/pixel.safetensors"
    import hashlib

    assert lora.sha256 == hashlib.sha256(data).hexdigest()
    # a catalog `path`: a copy in the loras folder, found again without the hub
    copy = resolve_lora(f"hf://{REPO}/styles/pixel.safetensors", dest="styles/pixel.safetensors")
    assert copy.path == host.models_dir() / "loras" / "styles" / "pixel.safetensors" and copy.path.read_bytes() == data
    import shutil

    shutil.rmtree(offline_hub / f"models--{REPO.replace('/', '--')}")
    assert resolve_lora(f"hf://{REPO}/styles/pixel.safetensors", dest="styles/pixel.safetensors").path == copy.path


def test_an_uncached_hub_file_offline_says_how_to_download_it(offline_hub, host) -> None:
    with pytest.raises(PresetsError) as info:
        resolve_lora(f"hf://{REPO}@v2/styles/pixel.safetensors")
    assert info.value.code == "lora_not_found" and "HF_HUB_OFFLINE" in info.value.message
    assert f"`hf download {REPO} styles/pixel.safetensors --revision v2`" in info.value.fix


def test_a_hub_file_that_is_not_safetensors_is_refused(offline_hub, host, tmp_path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "page.safetensors").write_text("<!DOCTYPE html><html>login</html>")
    fake_hub_cache(offline_hub, REPO, snapshot)
    with pytest.raises(PresetsError) as info:
        resolve_lora(f"hf://{REPO}/page.safetensors")
    assert info.value.code == "lora_invalid" and "html" in info.value.message
