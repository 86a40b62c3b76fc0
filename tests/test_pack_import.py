"""The pack loads the way ComfyUI loads it: by path, under a mangled module name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.comfy_loading import LOAD_PACK

LOAD_LIKE_COMFYUI = LOAD_PACK + """
import json
for cls in pack.NODE_CLASS_MAPPINGS.values():
    cls.INPUT_TYPES()  # ComfyUI calls this for /object_info at start-up
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "accelerate", "peft", "compel") if m in sys.modules)
print(json.dumps({"nodes": sorted(pack.NODE_CLASS_MAPPINGS), "names": pack.NODE_DISPLAY_NAME_MAPPINGS,
                  "heavy": heavy}))
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


def test_node_list_json_names_every_node() -> None:
    """ComfyUI Manager reads node_list.json to suggest this pack for missing node types."""
    import json

    import diffusers_presets

    listed = json.loads((Path(diffusers_presets.__file__).parent / "node_list.json").read_text())
    assert set(listed) == set(diffusers_presets.NODE_CLASS_MAPPINGS)
