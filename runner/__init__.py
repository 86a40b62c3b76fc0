"""Headless runner for Diffusers Presets workflows.

``python -m runner`` is started from the pack's folder, where ``runner`` is a top-level
package while the rest of the pack uses relative imports (ComfyUI imports the pack by path).
:func:`load_pack` therefore imports the pack folder itself as the package
``diffusers_presets`` and everything runs from there, exactly as inside ComfyUI.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_NAME = "diffusers_presets"


def load_pack() -> ModuleType:
    """Import the pack folder that contains this runner as ``diffusers_presets``."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_NAME]
        raise
    return module
