"""The pack loads the way ComfyUI loads it: by path, under a mangled module name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What ComfyUI's nodes.load_custom_node does for a directory pack (contract §1.1).
LOAD_LIKE_COMFYUI = f"""
import importlib.util, json, sys
path = {str(ROOT)!r}
name = path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, path + "/__init__.py", submodule_search_locations=[path])
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
for cls in module.NODE_CLASS_MAPPINGS.values():
    cls.INPUT_TYPES()  # ComfyUI calls this for /object_info at start-up
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "accelerate", "peft", "compel") if m in sys.modules)
print(json.dumps({{"nodes": sorted(module.NODE_CLASS_MAPPINGS), "names": module.NODE_DISPLAY_NAME_MAPPINGS,
                   "heavy": heavy}}))
"""


def test_loads_by_path_and_leaves_heavy_libraries_unimported(tmp_path: Path) -> None:
    # Run from an unrelated folder, so a top-level `nodes` or `runner` cannot be picked up by accident.
    result = subprocess.run([sys.executable, "-c", LOAD_LIKE_COMFYUI], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"PresetLoader", "VramProfile", "FixedSampler"} <= set(report["nodes"])
    assert report["heavy"] == []
    for name, title in report["names"].items():
        assert title, name


def test_every_node_has_title_description_category_and_tooltips() -> None:
    import diffusers_presets

    for name, cls in diffusers_presets.NODE_CLASS_MAPPINGS.items():
        assert cls.TITLE and cls.DESCRIPTION and cls.CATEGORY.startswith("Diffusers Presets"), name
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, entry in spec.get(section, {}).items():
                options = entry[1] if len(entry) > 1 else {}
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"
