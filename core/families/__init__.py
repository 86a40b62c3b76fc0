"""Model families: one module per diffusers pipeline kind (SDXL, Chroma, Flux, Z-Image, Anima).

Importing this package is cheap: torch, diffusers and transformers are imported inside the
family methods, so the node pack loads fast.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import PresetsError
from .base import Family
from .redux import NAME as REDUX_DIR
from .redux import build_tiny_redux

log = logging.getLogger(__name__)


class _DropTorchvisionAdvice(logging.Filter):
    """transformers says "Install torchvision" whenever it falls back to its PIL image
    processors. Here that advice is harmful (the registry's torchvision builds break diffusers'
    imports) and the PIL fallback is what we want, so the notice is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionAdvice())

# Family names; each is also the module that defines its FAMILY instance.
FAMILIES: tuple[str, ...] = ("sdxl", "chroma", "flux", "zimage", "anima")


def get_family(name: str) -> Family:
    """The family called ``name``; ``preset_invalid`` if there is none."""
    if name not in FAMILIES:
        raise PresetsError(
            "preset_invalid",
            f"unknown model family {name!r}.",
            f"use one of: {', '.join(FAMILIES)}.",
        )
    return importlib.import_module(f".{name}", __name__).FAMILY


def index_files(name: str) -> tuple[str, ...]:
    """The index file(s) that mark a complete pipeline folder of family ``name`` (or Redux)."""
    if name == REDUX_DIR:
        return ("model_index.json",)
    return getattr(get_family(name), "index_files", ("model_index.json",))


def _is_complete(folder: Path, name: str) -> bool:
    return any((folder / index).is_file() for index in index_files(name))


def _write_atomically(target: Path, name: str, build: Callable[[Path], None]) -> None:
    """Build into a temporary sibling folder and rename it into place, so an interrupted
    build never leaves a half-written model folder behind."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        if _is_complete(target, name):  # another builder finished it meanwhile
            return
        shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover
        try:
            tmp.rename(target)
        except OSError:
            # Another builder finished the same model first; keep theirs.
            if not _is_complete(target, name):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_all_tiny(dest_dir: Path) -> dict[str, Path]:
    """Write every family's tiny random-weight pipeline to ``dest_dir/<family>`` and the tiny
    Flux Redux to ``dest_dir/flux_redux``. Complete folders are kept as they are."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    builders = {name: get_family(name).build_tiny for name in FAMILIES}
    builders[REDUX_DIR] = build_tiny_redux
    written: dict[str, Path] = {}
    for name, build in builders.items():
        target = dest_dir / name
        if _is_complete(target, name):
            log.debug("tiny %s already at %s", name, target)
        else:
            _write_atomically(target, name, build)
            log.info("built tiny %s at %s", name, target)
        written[name] = target
    return written


__all__ = ["FAMILIES", "REDUX_DIR", "build_all_tiny", "get_family", "index_files"]
