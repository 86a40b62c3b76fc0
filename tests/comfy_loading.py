"""Python source that loads the pack the way ComfyUI does (contract §1.1: by file path, under
the path as module name with "." replaced by "_x_"), for scripts run in a fresh interpreter.
After it runs, ``pack`` is the loaded module and ``pack_name`` its name in ``sys.modules``."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tests" / "comfy_stubs"

LOAD_PACK = f"""
import importlib.util, sys
pack_path = {str(ROOT)!r}
pack_name = pack_path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(pack_name, pack_path + "/__init__.py",
                                              submodule_search_locations=[pack_path])
pack = importlib.util.module_from_spec(spec)
sys.modules[pack_name] = pack
spec.loader.exec_module(pack)
"""


def run_in_comfyui(script: str, models: Path, cwd: Path) -> dict:
    """Run ``script`` (which starts with LOAD_PACK) in a fresh interpreter beside the ComfyUI
    stand-ins, with ``models`` as ComfyUI's models folder; the JSON of its last output line."""
    env = {**os.environ, "STUB_COMFY_MODELS": str(models), "PYTHONPATH": str(STUBS)}
    env.pop("PRESETS_DIR", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
