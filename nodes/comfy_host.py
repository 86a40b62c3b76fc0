"""The host used inside ComfyUI: its model folders, ProgressBar and interrupt.

Only this module touches ComfyUI, and only when ComfyUI is the process that imported the
pack (``folder_paths`` and ``comfy`` importable); the runner keeps the headless host.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Optional

from ..core.host import Progress, set_host

log = logging.getLogger(__name__)


class ComfyHost:
    name = "comfyui"

    def __init__(self) -> None:
        import folder_paths

        self._folder_paths = folder_paths
        self.model_overrides: dict[str, str] = {}

    def models_dir(self) -> Path:
        return Path(self._folder_paths.models_dir)

    def model_folders(self, kind: str) -> list[Path]:
        try:
            return [Path(p) for p in self._folder_paths.get_folder_paths(kind)]
        except KeyError:  # a folder kind this ComfyUI does not know
            return [self.models_dir() / kind]

    def user_presets_dir(self) -> Optional[Path]:
        explicit = os.environ.get("PRESETS_DIR")
        return Path(explicit).expanduser() if explicit else self.models_dir() / "diffusers_presets"

    def cache_dir(self) -> Path:
        return self.models_dir() / "diffusers_presets_cache"

    def progress(self, total: int) -> Progress:
        import comfy.utils

        return comfy.utils.ProgressBar(total)

    def throw_if_interrupted(self) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def install_if_in_comfyui() -> bool:
    """Install the ComfyUI host when running inside ComfyUI; True if it was installed."""
    if importlib.util.find_spec("folder_paths") is None or importlib.util.find_spec("comfy") is None:
        return False
    set_host(ComfyHost())
    log.info("Diffusers Presets: using ComfyUI's folders, progress bar and interrupt")
    return True
