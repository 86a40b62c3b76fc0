"""Writing a file so that no reader ever sees half of it."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

Content = Union[bytes, str, Callable[[BinaryIO], None]]


def write_atomically(path: Path, content: Content, *, durable: bool = False) -> None:
    """Write ``content`` (bytes, UTF-8 text, or a function that writes to the open file) to a
    temporary file beside ``path``, then rename it over ``path``: readers see the old file or
    the new one, and an interrupted write leaves nothing behind. ``durable`` also syncs the
    data to disk before the rename (files that must survive a power cut)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        with open(temp, "xb") as handle:  # created like any file: the umask sets its mode
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
