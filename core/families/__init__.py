"""Model families: one module per diffusers pipeline kind (SDXL, Chroma, Flux, Z-Image, Anima).

Importing this package is cheap: torch, diffusers and transformers are imported inside the
family methods, so the node pack loads fast.
"""

from __future__ import annotations

import importlib
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import PresetsError
from .base import Family
from .redux import NAME as REDUX_DIR
from .redux import build_tiny_redux

log = logging.getLogger(__name__)


class DropMessage(logging.Filter):
    """Drops the records of one logger whose message matches ``pattern`` (from its start);
    every other record, real warnings included, passes."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.match(record.getMessage()) is None


# transformers says "Install torchvision" whenever it falls back to its PIL image processors
# (SigLIP in Flux Redux). Here that advice is harmful (the registry's torchvision builds break
# diffusers' imports) and the PIL fallback is what we want.
logging.getLogger("transformers.utils.import_utils").addFilter(
    DropMessage(r"`\w+ImageProcessor` requires torchvision \(not installed\); falling back to `\w+ImageProcessorPil`")
)
# diffusers tokenizes whole prompts without truncation to look for textual-inversion tokens
# (and to report truncation itself, with its own warning, which still shows); the text
# encoders always get truncated ids. transformers' generic "will result in indexing errors"
# is therefore false for every pipeline here.
logging.getLogger("transformers.tokenization_utils_base").addFilter(
    DropMessage(r"Token indices sequence length is longer than the specified maximum sequence length ")
)

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


def tiny_is_built(dest_dir: Path, name: str) -> bool:
    """Whether ``dest_dir/name`` holds a complete tiny model ``name`` (a family or Redux)."""
    return _is_complete(Path(dest_dir) / name, name)


def build_tiny(dest_dir: Path, name: str) -> Path:
    """Write the tiny random-weight pipeline ``name`` (a family, or ``flux_redux``) to
    ``dest_dir/name`` and return that folder; a complete folder is kept as it is."""
    target = Path(dest_dir) / name
    if _is_complete(target, name):
        log.debug("tiny %s already at %s", name, target)
        return target
    build = build_tiny_redux if name == REDUX_DIR else get_family(name).build_tiny
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, name, build)
    log.info("built tiny %s at %s", name, target)
    return target


def build_all_tiny(dest_dir: Path) -> dict[str, Path]:
    """Every family's tiny pipeline in ``dest_dir/<family>`` and the tiny Flux Redux in
    ``dest_dir/flux_redux``."""
    return {name: build_tiny(dest_dir, name) for name in (*FAMILIES, REDUX_DIR)}


__all__ = ["FAMILIES", "REDUX_DIR", "build_all_tiny", "build_tiny", "get_family", "index_files", "tiny_is_built"]
