"""Files the API reads and writes: /view and /upload, confined to the input, output and temp
folders (no ``..``, no absolute paths, no symlink that leads out), as ComfyUI resolves them."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Optional

from ..core_nodes import DIRECTORIES

FOLDER_TYPES = ("input", "output", "temp")
# Served as downloads, never rendered: a file someone uploaded must not run script in our origin.
DANGEROUS_TYPES = ("text/html", "text/javascript", "application/javascript", "text/css", "image/svg+xml",
                   "application/xhtml+xml", "text/xml", "application/xml")


def safe_content_type(name: str) -> str:
    """The content type to serve a stored file ``name`` with: its guessed type, but a download
    (``application/octet-stream``) for types a browser would run or render in our origin."""
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return "application/octet-stream" if kind in DANGEROUS_TYPES else kind


class FileRefused(Exception):
    """A path the request may not use; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def folder(kind: str) -> Path:
    if kind not in FOLDER_TYPES:
        raise FileRefused(400, f"unknown type {kind!r}: use one of {', '.join(FOLDER_TYPES)}")
    return DIRECTORIES.by_type(kind)


def is_inside(root: Path, candidate: str) -> bool:
    root_real = os.path.realpath(root)
    return os.path.commonpath([root_real, os.path.realpath(candidate)]) == root_real


def check_name(name: str) -> str:
    """A plain file name: no folders, no ``..``, no control characters."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        raise FileRefused(400, f"invalid file name {name!r}")
    return name


def subfolder_path(root: Path, subfolder: str, escape_status: int) -> Path:
    """``root/subfolder``, refused when it is absolute or leads out of ``root`` (symlinks
    followed)."""
    if not subfolder:
        return root
    if os.path.isabs(subfolder) or "\0" in subfolder or ".." in Path(subfolder).parts:
        raise FileRefused(escape_status, f"invalid subfolder {subfolder!r}")
    path = root / os.path.normpath(subfolder)
    if not is_inside(root, str(path)):
        raise FileRefused(escape_status, f"subfolder {subfolder!r} leads out of the {root.name} folder")
    return path


def view_path(filename: str, subfolder: str, kind: str) -> Path:
    """The file ``GET /view`` serves (ComfyUI's checks: 400 for a bad name or type, 403 for a
    subfolder or symlink that escapes, 404 when missing)."""
    match = filename.rsplit(" [", 1)
    if len(match) == 2 and match[1].rstrip("]") in FOLDER_TYPES and filename.endswith("]"):
        filename, kind = match[0], match[1][:-1]  # "name.png [output]"
    if not filename or filename.startswith("/") or ".." in filename or "\0" in filename:
        raise FileRefused(400, "invalid filename")
    root = folder(kind)
    directory = subfolder_path(root, subfolder, 403)
    path = directory / os.path.basename(filename)
    if not path.is_file():
        raise FileRefused(404, "file not found")
    if not is_inside(root, str(path)):
        raise FileRefused(403, "the file leads out of its folder")
    return path


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_upload(data: bytes, filename: str, subfolder: str, kind: str, overwrite: bool) -> str:
    """Write an uploaded file; returns the name it was stored under. A different file with the
    same name is kept and the upload becomes ``name (1).ext``; identical bytes reuse the name."""
    name = check_name(filename)
    directory = subfolder_path(folder(kind), subfolder, 400)
    directory.mkdir(parents=True, exist_ok=True)
    root = folder(kind)
    path = directory / name
    if path.exists() and not overwrite:
        if path.is_file() and is_inside(root, str(path)) and _digest(path.read_bytes()) == _digest(data):
            return name
        stem, ext = os.path.splitext(name)
        index = 1
        while path.exists() or path.is_symlink():
            name = f"{stem} ({index}){ext}"
            path = directory / name
            index += 1
    if path.is_dir():
        raise FileRefused(400, f"{name!r} is a folder")
    # Atomic: a reader never sees half a file; replacing a symlink replaces the link, not its target.
    handle, temp = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return name


def paste_mask(data: bytes, original: Path) -> bytes:
    """``/upload/mask``: the original image with the uploaded image's alpha as its alpha, as PNG
    (the original's text chunks kept)."""
    from PIL import Image, PngImagePlugin

    with Image.open(original) as source:
        info = PngImagePlugin.PngInfo()
        for key, value in getattr(source, "text", {}).items():
            info.add_text(key, value)
        image = source.convert("RGBA")
    with Image.open(io.BytesIO(data)) as uploaded:
        alpha = uploaded.convert("RGBA").getchannel("A").resize(image.size, Image.LANCZOS)
    image.putalpha(alpha)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=4)
    return out.getvalue()


def transform_image(path: Path, preview: Optional[str], channel: str) -> Optional[tuple[bytes, str]]:
    """``preview=webp;90`` / ``jpeg;85`` and ``channel=rgb|a``: (bytes, content type), or None
    when the file is served as is."""
    from PIL import Image

    if preview:
        parts = preview.split(";")
        fmt = parts[0] if parts[0] in ("webp", "jpeg") else "webp"
        quality = int(parts[-1]) if parts[-1].isdigit() else 90
        quality = max(1, min(quality, 100))
        with Image.open(path) as image:
            out = io.BytesIO()
            image = image.convert("RGB") if fmt == "jpeg" or channel == "rgb" else image.convert("RGBA")
            image.save(out, format=fmt.upper(), quality=quality)
        return out.getvalue(), f"image/{fmt}"
    if channel == "rgb":
        with Image.open(path) as image:
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
        return out.getvalue(), "image/png"
    if channel == "a":
        with Image.open(path) as image:
            image = image.convert("RGBA")
            alpha = Image.new("RGBA", image.size)
            alpha.putalpha(image.getchannel("A"))
            out = io.BytesIO()
            alpha.save(out, format="PNG")
        return out.getvalue(), "image/png"
    return None
