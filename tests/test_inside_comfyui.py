"""The pack inside ComfyUI: loaded by path next to ComfyUI's modules (stand-ins in
tests/comfy_stubs), it uses ComfyUI's folders, ProgressBar and interrupt."""

from __future__ import annotations

from pathlib import Path

from tests.comfy_loading import LOAD_PACK, run_in_comfyui


SCRIPT = LOAD_PACK + """
import json
import comfy.utils, comfy.model_management
from importlib import import_module
host = import_module(pack_name + ".core.host").get_host()
nodes = pack.NODE_CLASS_MAPPINGS
(handle,) = nodes["PresetLoader"]().load("demo/flux")
(images,) = nodes["FixedSampler"]().sample(handle, "a fox", "", 1, 0, 0, 1)
steps = list(comfy.utils.updates)
previews = list(comfy.utils.previews)
comfy.utils.updates.clear()
original = comfy.utils.ProgressBar.update_absolute
def interrupt_at_two(self, value, total=None, preview=None):
    if value == 2:
        comfy.model_management.interrupt_current_processing(True)
    original(self, value, total, preview)
comfy.utils.ProgressBar.update_absolute = interrupt_at_two
try:
    nodes["FixedSampler"]().sample(handle, "a fox", "", 2, 0, 0, 1)
    interrupted = None
except Exception as exc:
    interrupted = type(exc).__name__
cache = import_module(pack_name + ".core.cache").pipeline_cache()
cached_before = len(cache)
comfy.model_management.unload_all_models()  # what ComfyUI's "Unload Models" / POST /free calls
unload = {"before": cached_before, "after": len(cache), "comfy": comfy.model_management.unloaded}
lora_choices = nodes["CivitaiLoraLoader"].INPUT_TYPES()["required"]["lora"][0]
print(json.dumps({"lora_choices": lora_choices, "unload": unload, "host": host.name, "shape": list(images.shape), "steps": steps, "previews": previews, "interrupted": interrupted,
                   "after_interrupt": list(comfy.utils.updates), "users_presets": str(host.user_presets_dir()),
                   "loras": [str(p) for p in host.model_folders("loras")]}))
"""


def test_uses_comfyui_folders_progress_bar_and_interrupt(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    models = tmp_path / "models"
    (models / "diffusers_presets_cache").mkdir(parents=True)
    # Reuse this session's tiny models as the ComfyUI host's cache.
    (models / "diffusers_presets_cache" / "tiny-models").symlink_to(next(iter(tiny_models.values())).parent)
    (models / "loras" / "styles").mkdir(parents=True)
    (models / "loras" / "styles" / "ink.safetensors").write_bytes(b"listed, never read here")
    (models / "loras" / "notes.txt").write_text("not a LoRA")
    report = run_in_comfyui(SCRIPT, models, tmp_path)
    assert report["host"] == "comfyui"
    assert report["shape"] == [1, 64, 64, 3]
    assert report["steps"] == [[value, 50] for value in range(1, 51)]  # flux/dev's 50 steps
    # a live preview on the node with every step, as KSampler's (64 px image: an 8x8 latent shown at 8x)
    assert report["previews"] == [[value, 50, "JPEG", [64, 64], 512] for value in range(1, 51)]
    assert report["interrupted"] == "InterruptProcessingException"  # ComfyUI's own exception, unchanged
    assert report["after_interrupt"][-1] == [2, 50]
    assert report["users_presets"] == str(models / "diffusers_presets")
    assert report["loras"] == [str(models / "loras")]
    assert "styles/ink.safetensors" in report["lora_choices"]  # ComfyUI's (cached) file listing
    assert not any(choice.endswith(".txt") for choice in report["lora_choices"])
    assert report["unload"] == {"before": 1, "after": 0, "comfy": 1}  # ours released, ComfyUI's still called
