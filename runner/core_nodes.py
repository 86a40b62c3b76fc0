"""Headless stand-ins for the ComfyUI core nodes the example workflows use (contract §2).

SaveImage, PreviewImage and LoadImage behave like ComfyUI's (file naming, subfolders, PNG text
chunks, mask = 1 − alpha); the Primitive nodes pass their value through. They are registered
only when ComfyUI is absent (:func:`node_registry`). torch and numpy load on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.errors import PresetsError
from ..core.files import write_atomically

log = logging.getLogger(__name__)


@dataclass
class Directories:
    """Where images are written and read; the CLI and the server set these."""

    output: Path = field(default_factory=lambda: Path.cwd() / "output")
    input: Path = field(default_factory=lambda: Path.cwd() / "input")
    temp: Path = field(default_factory=lambda: Path.cwd() / "temp")

    def by_type(self, kind: str) -> Path:
        return {"output": self.output, "input": self.input, "temp": self.temp}[kind]


DIRECTORIES = Directories()


def set_directories(
    output: Optional[Path] = None, input: Optional[Path] = None, temp: Optional[Path] = None
) -> None:
    if output is not None:
        DIRECTORIES.output = Path(output)
    if input is not None:
        DIRECTORIES.input = Path(input)
    if temp is not None:
        DIRECTORIES.temp = Path(temp)


# --- paths -----------------------------------------------------------------------------------------
_ANNOTATION = re.compile(r"^(.*) \[(input|output|temp)\]$")


def annotated_path(name: str) -> Path:
    """``"a.png"``, ``"sub/a.png"`` or ``"a.png [output]"`` → a path inside that directory."""
    match = _ANNOTATION.match(name)
    base = DIRECTORIES.by_type(match.group(2)) if match else DIRECTORIES.input
    relative = match.group(1) if match else name
    return (base / os.path.relpath(os.path.join(os.sep, relative), os.sep)).resolve()


def _prefix_substitutions(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    values = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for token, value in values.items():
        prefix = prefix.replace(token, value)
    return prefix


# A NUL ends a path in the OS; a lone surrogate cannot be written as a UTF-8 file name.
_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")


def save_image_path(prefix: str, root: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """ComfyUI's ``get_save_image_path``: (folder, file prefix, next counter, subfolder)."""
    bad = _UNWRITABLE.search(prefix)
    if bad:
        raise PresetsError(
            "input_invalid",
            f"filename_prefix {prefix!r} has the character {bad.group()!r}, which no file name can hold.",
            "use a prefix of printable characters (letters, digits, '-', '_', '/').",
        )
    prefix = _prefix_substitutions(prefix, width, height)
    normalized = os.path.normpath(prefix)
    subfolder = os.path.dirname(normalized)
    filename = os.path.basename(normalized)
    root = root.resolve()
    folder = (root / subfolder).resolve()
    if os.path.commonpath([root, folder]) != str(root):
        raise PresetsError(
            "input_invalid",
            f"filename_prefix {prefix!r} would save outside the output folder {root} (into {folder}).",
            "use a prefix without '..' and without an absolute path, e.g. 'renders/cat'.",
        )
    pattern = re.compile(re.escape(filename) + r"_(\d+)_")
    counter = 0
    if folder.is_dir():
        for entry in os.listdir(folder):
            match = pattern.match(entry)
            if match:
                counter = max(counter, int(match.group(1)))
    return folder, filename, counter + 1, "" if subfolder in ("", ".") else subfolder.replace(os.sep, "/")


def write_png_atomically(image: Any, path: Path, pnginfo: Any, compress_level: int) -> None:
    """Write to a temporary file next to ``path`` and rename it, so an interrupted run never
    leaves a half-written image."""
    write_atomically(path, lambda handle: image.save(handle, format="PNG", pnginfo=pnginfo,
                                                     compress_level=compress_level))


# --- nodes -------------------------------------------------------------------------------------------
class SaveImage:
    """Saves images to the output directory as ``<prefix>_<counter:05>_.png`` with the prompt
    and workflow in PNG text chunks."""

    kind = "output"
    compress_level = 4

    def __init__(self) -> None:
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. It may contain subfolders "
                        "and %date:yyyy-MM-dd% or %Node.widget% values.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to the output directory."

    def save_images(
        self, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
    ) -> dict:
        import numpy as np
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        root = DIRECTORIES.by_type(self.kind)
        folder, filename, counter, subfolder = save_image_path(
            filename_prefix + self.prefix_append, root, images[0].shape[1], images[0].shape[0]
        )
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for batch_number, image in enumerate(images):
            pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            picture = Image.fromarray(pixels)
            metadata = PngInfo()
            if prompt is not None:
                metadata.add_text("prompt", json.dumps(prompt))
            for key, value in (extra_pnginfo or {}).items():
                metadata.add_text(key, json.dumps(value))
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            write_png_atomically(picture, folder / name, metadata, self.compress_level)
            log.info("saved %s", folder / name)
            results.append({"filename": name, "subfolder": subfolder, "type": self.kind})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    """Saves images to the temp directory as ``ComfyUI_temp_<5 letters>_00001_.png``."""

    kind = "temp"
    compress_level = 1

    def __init__(self) -> None:
        self.prefix_append = "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    DESCRIPTION = "Saves the input images to the temp directory."


def _input_images() -> list[str]:
    folder = DIRECTORIES.input
    if not folder.is_dir():
        return []
    names = []
    for entry in os.listdir(folder):
        mime = mimetypes.guess_type(entry)[0] or ""
        if mime.startswith("image/") and (folder / entry).is_file():
            names.append(entry)
    return sorted(names)


class LoadImage:
    """Loads an image from the input directory: IMAGE plus MASK = 1 − alpha."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": (_input_images(), {"image_upload": True})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    def load_image(self, image: str) -> tuple:
        from PIL import Image

        try:
            return self._decode(Image.open(annotated_path(image)))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # PIL's ways of saying "not an image"
            raise PresetsError(
                "input_invalid",
                f"the input image {image!r} cannot be read: {exc}",
                "replace it with a valid PNG, JPEG or WebP file (open it in an image viewer to check).",
            ) from exc

    @staticmethod
    def _decode(picture: Any) -> tuple:
        import numpy as np
        import torch
        from PIL import ImageOps, ImageSequence

        images, masks = [], []
        size = None
        for frame in ImageSequence.Iterator(picture):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda value: value * (1 / 255))
            rgb = frame.convert("RGB")
            size = size or rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None,])
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32)
            masks.append(mask.unsqueeze(0))
        if len(images) > 1 and picture.format != "MPO":
            return torch.cat(images, dim=0), torch.cat(masks, dim=0)
        return images[0], masks[0]

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return hashlib.sha256(annotated_path(image).read_bytes()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> Any:
        if not isinstance(image, str) or not annotated_path(image).is_file():  # `--set 2.image=5` is no file name
            return f"Invalid image file: {image} (looked in {DIRECTORIES.input}; use --input-dir)"
        return True


def _primitive(name: str, kind: str, options: dict, doc: str) -> type:
    def run(self: Any, value: Any) -> tuple:
        return (value,)

    return type(
        name,
        (),
        {
            "__doc__": doc,
            "INPUT_TYPES": classmethod(lambda cls: {"required": {"value": (kind, dict(options))}}),
            "RETURN_TYPES": (kind,),
            "FUNCTION": "run",
            "CATEGORY": "utils/primitive",
            "run": run,
        },
    )


PrimitiveInt = _primitive(
    "PrimitiveInt", "INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True}, "An integer."
)
PrimitiveFloat = _primitive("PrimitiveFloat", "FLOAT", {"min": -sys.maxsize, "max": sys.maxsize}, "A number.")
PrimitiveString = _primitive("PrimitiveString", "STRING", {}, "A string.")
PrimitiveStringMultiline = _primitive("PrimitiveStringMultiline", "STRING", {"multiline": True}, "A multi-line string.")
PrimitiveBoolean = _primitive("PrimitiveBoolean", "BOOLEAN", {}, "A boolean.")

NODE_CLASS_MAPPINGS = {
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "LoadImage": LoadImage,
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveString": PrimitiveString,
    "PrimitiveStringMultiline": PrimitiveStringMultiline,
    "PrimitiveBoolean": PrimitiveBoolean,
}


NODE_DISPLAY_NAME_MAPPINGS = {
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "LoadImage": "Load Image",
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveBoolean": "Boolean",
}


def node_registry() -> dict[str, type]:
    """The runner's nodes: the pack's ``NODE_CLASS_MAPPINGS`` plus the headless core nodes
    (the core nodes win on a name clash, as in ComfyUI)."""
    from .. import NODE_CLASS_MAPPINGS as PACK_NODES

    return {**PACK_NODES, **NODE_CLASS_MAPPINGS}


def display_names() -> dict[str, str]:
    """Default node titles, as the frontend shows them."""
    from .. import NODE_DISPLAY_NAME_MAPPINGS as PACK_NAMES

    return {**PACK_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}
