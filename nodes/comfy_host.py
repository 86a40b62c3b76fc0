"""The host used inside ComfyUI: its model folders, ProgressBar and interrupt.

Only this module touches ComfyUI, and only when ComfyUI is the process that imported the
pack (``folder_paths`` and ``comfy`` importable); the runner keeps the headless host.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Optional

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

    def model_files(self, kind: str) -> list[str]:
        # ComfyUI's listing is cached on folder mtimes: INPUT_TYPES calls this often.
        try:
            return [name.replace("\\", "/") for name in self._folder_paths.get_filename_list(kind)]
        except KeyError:
            return []

    def user_presets_dir(self) -> Optional[Path]:
        explicit = os.environ.get("PRESETS_DIR")
        return Path(explicit).expanduser() if explicit else self.models_dir() / "diffusers_presets"

    def cache_dir(self) -> Path:
        return self.models_dir() / "diffusers_presets_cache"

    def progress(self, total: int) -> Progress:
        return _ComfyProgress(total)

    def throw_if_interrupted(self) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


class _ComfyProgress:
    """ComfyUI's progress bar on the running node; step previews ride on it onto the node, as
    KSampler's do (unless ComfyUI was started with ``--preview-method none``)."""

    def __init__(self, total: int) -> None:
        import comfy.utils

        self.bar = comfy.utils.ProgressBar(total)

    def update_absolute(self, value: int, total: Optional[int] = None) -> None:
        self.bar.update_absolute(value, total)

    def preview(self, latent: Any, family: str) -> None:
        if not _previews_enabled():
            return
        from ..core.previews import MAX_PREVIEW_SIZE, latent_to_image

        picture = ("JPEG", latent_to_image(latent, family), MAX_PREVIEW_SIZE)
        self.bar.update_absolute(self.bar.current, self.bar.total, picture)


def _previews_enabled() -> bool:
    try:
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:  # a ComfyUI without the option: previews on, as its default is
        return True
    return args.preview_method != LatentPreviewMethod.NoPreviews


def _unload_with_comfyui() -> None:
    """ComfyUI's "Unload Models" (POST /free) calls comfy.model_management.unload_all_models;
    wrap it so our cached pipelines are released too."""
    import comfy.model_management as model_management

    original = model_management.unload_all_models
    if getattr(original, "diffusers_presets_wrapped", False):
        return

    def unload_all_models(*args: object, **kwargs: object) -> object:
        from ..core.cache import pipeline_cache

        count = pipeline_cache().unload()
        if count:
            log.info("Diffusers Presets: unloaded %d cached pipeline(s)", count)
        return original(*args, **kwargs)

    unload_all_models.diffusers_presets_wrapped = True  # type: ignore[attr-defined]
    model_management.unload_all_models = unload_all_models


def install_if_in_comfyui() -> bool:
    """Install the ComfyUI host when running inside ComfyUI; True if it was installed."""
    if importlib.util.find_spec("folder_paths") is None or importlib.util.find_spec("comfy") is None:
        return False
    set_host(ComfyHost())
    _unload_with_comfyui()
    log.info("Diffusers Presets: using ComfyUI's folders, progress bar, interrupt and model unloading")
    return True
