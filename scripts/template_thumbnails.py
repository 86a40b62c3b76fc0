"""Write the template browser's thumbnail beside each example workflow.

ComfyUI shows ``example_workflows/<name>.jpg`` as the thumbnail of a pack's template
``<name>.json`` (the runner's server serves it at ``/api/workflow_templates/<pack>/<name>.jpg``).
These are plain cards that say what the workflow is, its name, its presets and its nodes, not
pictures it made: a picture would depend on weights the checkout does not have.

Run it after adding or changing an example workflow, and commit the .jpg files::

    python scripts/template_thumbnails.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
SIZE = 256
# One background per family, from the preset id's first part.
COLOURS = {"demo": (70, 80, 96), "sdxl": (52, 88, 140), "flux": (120, 64, 140), "chroma": (150, 90, 40),
           "zimage": (40, 120, 100), "anima": (150, 60, 80)}


def _presets(workflow: dict) -> list[str]:
    found = []
    for node in workflow.get("nodes", []):
        if node.get("type") == "PresetLoader" and node.get("widgets_values"):
            preset = str(node["widgets_values"][0])
            if preset not in found:
                found.append(preset)
    return found


def thumbnail(workflow_path: Path) -> Image.Image:
    workflow = json.loads(workflow_path.read_text(encoding="utf-8"))
    presets = _presets(workflow)
    family = presets[0].split("/")[0] if presets else ""
    image = Image.new("RGB", (SIZE, SIZE), COLOURS.get(family, (80, 80, 80)))
    draw = ImageDraw.Draw(image)
    small, large = ImageFont.load_default(size=15), ImageFont.load_default(size=26)
    draw.text((16, 14), "Diffusers Presets", font=small, fill=(220, 220, 220))
    draw.text((16, 52), workflow_path.stem, font=large, fill=(255, 255, 255))
    draw.text((16, 92), ", ".join(presets), font=small, fill=(235, 235, 235))
    nodes = [str(node.get("type")) for node in sorted(workflow.get("nodes", []), key=lambda n: n.get("order", 0))]
    for row, name in enumerate(nodes[:6]):
        draw.text((28, 130 + 20 * row), f"- {name}", font=small, fill=(205, 205, 205))
    return image


def main() -> int:
    for path in sorted(EXAMPLES.glob("*.json")):
        target = path.with_suffix(".jpg")
        thumbnail(path).save(target, format="JPEG", quality=85, optimize=True)
        print(f"{target.relative_to(EXAMPLES.parent)} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
