"""Images served by URL (``response_format=url``) for a stated time, then deleted.

Each image is a file ``<random id>.<ext>`` in the data folder; the unguessable id is the
capability (clients such as Open WebUI fetch the URL without the API key, as OpenAI's URLs
are fetched). A file older than the TTL is refused at once and deleted by a sweep that runs
at start-up and then on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Optional

from ...core.files import write_atomically

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(png|jpeg|webp)$")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ImageFiles:
    def __init__(self, folder: Path, ttl_s: float) -> None:
        self.folder = Path(folder)
        self.ttl_s = ttl_s
        self._task: Optional[asyncio.Task] = None

    def put(self, data: bytes, output_format: str) -> str:
        """Store an image; its file id."""
        self.folder.mkdir(parents=True, exist_ok=True)
        file_id = f"{secrets.token_urlsafe(24)}.{output_format}"
        write_atomically(self.folder / file_id, data)
        return file_id

    def path(self, file_id: str) -> Optional[Path]:
        """The file of a live id; None for a malformed, unknown or expired one."""
        if not _NAME.match(file_id):
            return None
        path = self.folder / file_id
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return None
        return path if age <= self.ttl_s else None

    def sweep(self) -> int:
        """Delete expired files (and leftovers of interrupted writes); how many."""
        if not self.folder.is_dir():
            return 0
        now, count = time.time(), 0
        for entry in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_file() and now - entry.stat().st_mtime > self.ttl_s:
                    entry.unlink()
                    count += 1
        if count:
            log.info("deleted %d expired image file(s) from %s", count, self.folder)
        return count

    async def _loop(self) -> None:
        # Often enough that no file outlives its TTL by much, rarely enough to cost nothing.
        interval = max(1.0, min(self.ttl_s / 4, 300.0))
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def start(self) -> None:
        self.sweep()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
