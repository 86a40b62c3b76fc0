"""Model discovery (`python -m runner models`): diffusers folders, single-file checkpoints, the
Hugging Face cache and LoRAs with their sidecars, by family, with the presets that use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffusers_presets.core import discovery
from diffusers_presets.runner.cli import main
from tests.local_models import AIR, build_machine


@pytest.fixture
def machine(host, tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    from huggingface_hub import constants

    paths = build_machine(tmp_path, tiny_models)
    host.models_root = paths["models"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(paths["hub"]))
    presets = tmp_path / "presets"
    (presets / "flux").mkdir(parents=True)
    (presets / "flux" / "mine.yaml").write_text(
        "extends: flux/dev\nsource: {folder: my-flux}\nloras: [{ref: flux-style.safetensors}]\n")
    (presets / "sdxl").mkdir()
    (presets / "sdxl" / "detail.yaml").write_text(f"extends: demo/sdxl\nloras: [{{ref: '{AIR}'}}]\n")
    monkeypatch.setenv("PRESETS_DIR", str(presets))
    return paths


def by_name(entries: list) -> dict[str, discovery.ModelEntry]:
    return {e.name: e for e in entries}


def test_every_kind_is_found_with_its_family(machine: dict[str, Path]) -> None:
    found = by_name(discovery.discover())
    assert (found["my-flux"].kind, found["my-flux"].family, found["my-flux"].detail) == ("diffusers", "flux", "FluxPipeline")
    # a modular pipeline (modular_model_index.json) in a nested folder
    assert (found["nested/anima-x"].family, found["nested/anima-x"].supported) == ("anima", True)
    # single-file checkpoints: family from the safetensors header's tensor names
    assert (found["sdxl-unet.safetensors"].kind, found["sdxl-unet.safetensors"].family) == ("checkpoint", "sdxl")
    assert found["chroma.safetensors"].family == "chroma"
    hub = found["tiny-org/tiny-zimage"]
    assert (hub.kind, hub.family, hub.revision) == ("hub", "zimage", "main")


def test_a_pickle_checkpoint_is_listed_but_never_unpickled(machine: dict[str, Path]) -> None:
    evil = by_name(discovery.discover())["evil.ckpt"]
    assert (evil.family, evil.supported, evil.detail) == (None, False, "unsupported, pickle")
    assert not machine["marker"].exists()


def test_loras_with_and_without_sidecars(machine: dict[str, Path]) -> None:
    found = by_name(discovery.discover(kinds=("lora",)))
    with_sidecar = found["civitai/sdxl-detail.safetensors"]
    assert with_sidecar.family == "sdxl" and with_sidecar.detail == "sidecar"
    assert with_sidecar.lora.air == AIR and with_sidecar.lora.base_model == "Illustrious"
    assert with_sidecar.lora.trigger_words == ["detailed", "sharp"]
    plain = found["flux-style.safetensors"]
    assert (plain.family, plain.detail, plain.lora) == ("flux", "no sidecar", None)  # from the header


def test_presets_that_use_each_model(machine: dict[str, Path]) -> None:
    found = by_name(discovery.discover())
    assert found["my-flux"].presets == ["flux/mine"]
    assert found["flux-style.safetensors"].presets == ["flux/mine"]
    assert found["civitai/sdxl-detail.safetensors"].presets == ["sdxl/detail"]  # matched by AIR version
    assert found["nested/anima-x"].presets == []


def test_family_filter_and_order(machine: dict[str, Path]) -> None:
    only_sdxl = discovery.discover(family="sdxl")
    assert {e.name for e in only_sdxl} == {"sdxl-unet.safetensors", "civitai/sdxl-detail.safetensors"}
    families = [e.family or "~" for e in discovery.discover()]
    assert families == sorted(families)


def test_models_command_json_schema(machine: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json", "--family", "flux"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["schema"] == discovery.SCHEMA_VERSION
    assert {m["name"] for m in result["models"]} == {"my-flux", "flux-style.safetensors"}
    for model in result["models"]:
        assert set(model) == {"kind", "name", "path", "family", "supported", "detail", "revision", "presets", "lora"}


def test_models_command_table_groups_by_family(machine: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.index("flux:") < out.index("my-flux") < out.index("sdxl:")
    assert "unknown:" in out and "unsupported, pickle" in out
    assert f"{AIR}; base Illustrious; triggers: detailed, sharp" in out
