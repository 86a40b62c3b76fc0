"""Presets: the shipped table, layering and every way a preset file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.presets import SHIPPED_DIR, PresetRegistry
from tests.expected import SHIPPED



def user_registry(tmp_path: Path, files: dict[str, str]) -> PresetRegistry:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return PresetRegistry(SHIPPED_DIR, tmp_path)


def test_shipped_presets_have_the_fixed_parameters() -> None:
    presets = PresetRegistry(SHIPPED_DIR)
    for preset_id, (family, steps, cfg, sampler) in SHIPPED.items():
        preset = presets.get(preset_id)
        assert (preset.family, preset.steps, preset.cfg, preset.sampler) == (family, steps, cfg, sampler)
        assert preset.description and preset.license
        assert not preset.is_tiny


def test_one_default_per_family_and_demo_presets_inherit() -> None:
    presets = PresetRegistry(SHIPPED_DIR)
    for family in ("sdxl", "chroma", "flux", "zimage", "anima"):
        assert sum(p.default for p in presets.all() if p.family == family) == 1
        demo = presets.get(f"demo/{family}")
        base = next(p for p in presets.all() if p.family == family and p.default)
        assert demo.is_tiny and not demo.default
        assert (demo.steps, demo.cfg, demo.sampler) == (base.steps, base.cfg, base.sampler)
        assert (demo.width, demo.height, demo.dtype) == (64, 64, "float32")


def test_family_base_fills_in_and_preset_overrides() -> None:
    preset = PresetRegistry(SHIPPED_DIR).get("sdxl/illustrious")
    assert preset.size.multiple == 8 and preset.negative_prompt and preset.prompt_style == "tags"
    assert preset.render_prompt("1girl, smile").endswith("absurdres, 1girl, smile")
    assert preset.render_negative("extra fingers").endswith("watermark, extra fingers")
    assert preset.files[0].endswith("_family.yaml") and preset.files[-1].endswith("illustrious.yaml")


def test_tiny_override_keeps_fixed_parameters() -> None:
    preset = PresetRegistry(SHIPPED_DIR).get("flux/dev")
    tiny = preset.with_tiny_source()
    assert tiny.is_tiny and tiny.dtype == "float32" and tiny.redux == {"tiny": True}
    assert (tiny.steps, tiny.cfg, tiny.sampler, tiny.id) == (50, 3.5, None, "flux/dev")


def test_user_presets_add_and_override(tmp_path: Path) -> None:
    presets = user_registry(tmp_path, {
        "flux/dev.yaml": "width: 768\nheight: 512\n",
        "sdxl/mine.yaml": "description: mine\nsource: {folder: my-sdxl}\nsteps: 30\ncfg: 5\n",
    })
    dev = presets.get("flux/dev")
    assert (dev.width, dev.height, dev.steps) == (768, 512, 50)
    mine = presets.get("sdxl/mine")
    assert (mine.steps, mine.cfg, mine.sampler, mine.size.multiple) == (30, 5.0, None, 8)
    assert not mine.default


def test_user_default_replaces_the_shipped_one(tmp_path: Path) -> None:
    presets = user_registry(tmp_path, {"flux/fast.yaml": "default: true\nextends: flux/schnell\n"})
    assert presets.default_for("flux").id == "flux/fast"
    assert not presets.get("flux/dev").default


@pytest.mark.parametrize("text, field", [
    ("steps: 0\n", "steps"),
    ("steps: fast\n", "steps"),
    ("cfg: true\n", "cfg"),
    ("sampler: dpm_magic\n", "sampler"),
    ("dtype: int8\n", "dtype"),
    ("width: 1000\n", "width/height"),
    ("prompt_template: 'no placeholder'\n", "prompt_template"),
    ("source: {repo: a/b, folder: x}\n", "source"),
    ("source: {file: x.safetensors}\n", "source"),
    ("family: sd15\n", "family"),
    ("extends: flux/nope\n", "extends"),
])
def test_malformed_preset_names_file_field_value_and_allowed(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(PresetsError) as info:
        user_registry(tmp_path, {"flux/dev.yaml": text})
    error = info.value
    assert error.code == "preset_invalid"
    assert str(tmp_path / "flux" / "dev.yaml") in error.message
    assert f"'{field}'" in error.message and "allowed:" in error.message


def test_unknown_field_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(PresetsError, match="unknown field 'stepz'") as info:
        user_registry(tmp_path, {"flux/dev.yaml": "stepz: 3\n"})
    assert info.value.code == "preset_invalid"
    with pytest.raises(PresetsError, match="not valid YAML"):
        user_registry(tmp_path, {"flux/dev.yaml": "steps: [1,\n"})


def test_two_defaults_in_one_layer_and_extends_cycle(tmp_path: Path) -> None:
    with pytest.raises(PresetsError, match="exactly one default"):
        user_registry(tmp_path, {"flux/a.yaml": "default: true\nextends: flux/dev\n",
                                 "flux/b.yaml": "default: true\nextends: flux/dev\n"})
    with pytest.raises(PresetsError, match="cycle"):
        user_registry(tmp_path, {"flux/a.yaml": "extends: flux/b\n", "flux/b.yaml": "extends: flux/a\n"})


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(PresetsError) as info:
        PresetRegistry(SHIPPED_DIR).get("flux/turbo")
    assert info.value.code == "preset_not_found"
    assert "flux/schnell" in info.value.fix


def test_readme_lists_every_error_code() -> None:
    from diffusers_presets.core.errors import CODES

    readme = (SHIPPED_DIR.parent / "README.md").read_text(encoding="utf-8")
    assert [code for code in CODES if f"| `{code}` |" not in readme] == []
