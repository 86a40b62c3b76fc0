"""Verified, resumable single-file downloads.

One call of :func:`download_file` resolves the first URL's redirect once (Civitai answers with a
short-lived signed storage URL), streams into ``<final>.part`` beside the destination, resumes
with ``Range`` after a cut, refuses HTML and pickle payloads, checks size and SHA256, and only
then renames the file into place. A lock file makes a second caller (thread or process) wait
and then reuse the finished file instead of downloading it again.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import sys
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urljoin

from ..errors import PresetsError
from ..host import get_host
from .client import KEY_FIX, auth_headers, error_for_status
from .transport import (BACKOFF, REDIRECT_STATUSES, TRANSPORT_ERRORS, CannotConnect, HttpStatusError, TransportError,
                        host_of, open_url)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
STALL_TIMEOUT_S = 60.0  # no byte for this long = a cut; module-level so tests can shrink it
SIZE_TOLERANCE = 1024  # Civitai's sizeKB is a rounded float
_PROGRESS_EVERY_S = 0.25  # host progress (ComfyUI's bar; each update also checks for an interrupt)
LOG_EVERY_S = 2.0  # byte progress in the log: often enough to see it move, rare enough to read
_MIN_PROGRESS = 64 * 1024  # an attempt that moved less than this counts as a failure
_MAX_REDIRECTS = 5
_SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024
_HEAD_BYTES = 16  # enough to tell safetensors from HTML, zip and pickle
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


@dataclass(frozen=True)
class DownloadSpec:
    url: str
    what: str  # for messages, e.g. "the file of Civitai model version 368189"
    sha256: Optional[str] = None  # lower-case hex; None = compute and record
    size: Optional[int] = None  # expected bytes, within SIZE_TOLERANCE
    civitai: bool = False  # map HTTP failures to the civitai_* codes


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    reused: bool  # another run had already downloaded it


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def sanitize_filename(name: str, fallback: str = "lora") -> str:
    """A file name that is safe to create in the loras folder, ending in ``.safetensors``.

    Server-supplied names are untrusted: path parts, ``..``, control characters and reserved
    Windows names are removed."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = re.sub(r"[\x00-\x1f\x7f<>:\"|?*]", "_", name).strip(" .")
    stem = name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else Path(name).stem
    stem = re.sub(r"\.{2,}", ".", stem).strip(" .")[:150]
    if not stem or stem.lower().split(".")[0] in _WINDOWS_RESERVED:
        stem = f"{fallback}_{stem}" if stem else fallback
    return f"{stem}.safetensors"


def payload_problem(head: bytes) -> Optional[str]:
    """Why the first bytes of a download are not a safetensors file, or None if they are."""
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= _SAFETENSORS_HEADER_MAX:
        return None
    if head.lstrip()[:1] == b"<":
        return "html"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def format_size(count: float) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f} GB"
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


def format_progress(name: str, done: int, total: Optional[int], rate: Optional[float]) -> str:
    """``downloading x.safetensors: 12.3 MB of 144.0 MB (35.1 MB/s)``; total and rate when known."""
    text = f"downloading {name}: {format_size(done)}"
    if total:
        text += f" of {format_size(total)}"
    if rate is not None:
        text += f" ({format_size(rate)}/s)"
    return text


class ByteProgress:
    """One download's progress, told twice: to the host as raw byte counts (ComfyUI's bar is
    step-based), and in the log in MB with the rate (at most every :data:`LOG_EVERY_S`, and at
    the end)."""

    def __init__(self, name: str, done: int = 0) -> None:
        self.name = name
        # The run that started the download: huggingface_hub may report from its worker threads.
        self.context = contextvars.copy_context()
        self.began = self.last_log = time.monotonic()
        self.last_report = 0.0
        self.bar = None
        self.done = done  # where a resumed download starts
        self.moved = 0  # bytes received by this run (resumed bytes and restarts do not count)

    def update(self, done: int, total: Optional[int], final: bool = False) -> None:
        self.moved += max(0, done - self.done)
        self.done = done
        now = time.monotonic()
        if self.bar is None and total:
            self.bar = self.context.run(get_host().progress, total)
        if self.bar is not None and (final or now - self.last_report >= _PROGRESS_EVERY_S):
            self.last_report = now
            self.bar.update_absolute(done, total)
        if final or now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            elapsed = now - self.began
            log.info("%s", format_progress(self.name, done, total, self.moved / elapsed if elapsed > 0 else None))


@contextmanager
def file_lock(target: Path, poll_s: float = 0.1) -> Iterator[None]:
    """Hold an exclusive lock for ``target`` across threads and processes (an OS lock through
    ``filelock``: released by the OS if the holder dies, so a crash never leaves a stale lock).
    Waiting stays interruptible."""
    from filelock import FileLock, Timeout

    digest = hashlib.sha1(str(target.resolve()).encode("utf-8")).hexdigest()[:20]
    lock_path = get_host().cache_dir() / "locks" / f"{digest}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)  # a new object per call: threads exclude each other too
    waited = False
    while True:
        try:
            lock.acquire(timeout=poll_s)
            break
        except Timeout:
            if not waited:
                log.info("waiting for another download of %s to finish", target.name)
                waited = True
            get_host().throw_if_interrupted()
    try:
        yield
    finally:
        lock.release()


def download_file(spec: DownloadSpec, dest: Path) -> Downloaded:
    """Download ``spec`` to ``dest`` (verified), or reuse ``dest`` when a concurrent run
    already put it there. Nothing ever appears under ``dest`` unless it verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest):
        if dest.exists():
            digest = sha256_file(dest)
            if spec.sha256 in (None, digest):
                log.info("%s is already at %s", spec.what, dest)
                return Downloaded(dest, digest, dest.stat().st_size, reused=True)
            raise PresetsError("download_failed", f"{dest} already exists but is not {spec.what} (SHA256 {digest}).",
                               "move that file away and run again.")
        part = dest.with_name(dest.name + ".part")
        for attempt in (1, 2):
            digest, size = _Transfer(spec, part).run()
            problem = _verify(spec, digest, size)
            if problem is None:
                break
            part.unlink(missing_ok=True)
            if attempt == 2:
                raise PresetsError("download_failed", f"{spec.what} did not verify: {problem}; the partial file "
                                   "was deleted.", "try again later; if it keeps failing the file on the server "
                                   "is damaged or its listed hash is wrong.")
            log.warning("%s did not verify (%s); downloading it again", spec.what, problem)
        if spec.sha256 is None:
            log.warning("%s has no published SHA256; recorded the computed one (%s)", spec.what, digest)
        os.replace(part, dest)
        _fsync_dir(dest.parent)
        log.info("downloaded %s to %s (%d bytes, sha256 %s)", spec.what, dest, size, digest)
        return Downloaded(dest, digest, size, reused=False)


def _verify(spec: DownloadSpec, digest: str, size: int) -> Optional[str]:
    if spec.size is not None and abs(size - spec.size) > SIZE_TOLERANCE:
        return f"{size} bytes instead of about {spec.size}"
    if spec.sha256 is not None and digest != spec.sha256:
        return f"SHA256 {digest} instead of {spec.sha256}"
    return None


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Transfer:
    """One verified-or-failed pass over ``part``; resumes what is already there."""

    def __init__(self, spec: DownloadSpec, part: Path) -> None:
        self.spec = spec
        self.part = part
        self.resolved: Optional[str] = None  # the signed URL the first request redirected to
        self.reresolved = False
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.total: Optional[int] = None
        self.head = b""  # the first bytes, checked before the rest is written
        if part.exists():
            with open(part, "rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    if not self.offset:
                        self.head = block[:_HEAD_BYTES]
                    self.hasher.update(block)
                    self.offset += len(block)
            log.info("resuming %s at byte %d", spec.what, self.offset)
        self.progress = ByteProgress(part.name[: -len(".part")], done=self.offset)

    def run(self) -> tuple[str, int]:
        failures = 0
        while True:
            before = self.offset
            try:
                if self._attempt():
                    return self.hasher.hexdigest(), self.offset
                failures = 0  # restarted on purpose (server ignored Range)
                continue
            except HttpStatusError as exc:
                if exc.status == 416 and self.offset:
                    if self._range_complete(exc):
                        return self.hasher.hexdigest(), self.offset
                    self._restart("the server refused to resume")
                    continue
                if not exc.retryable:
                    if self.resolved and not self.reresolved and exc.status in (401, 403, 404, 410):
                        log.info("the signed download URL for %s expired; asking again", self.spec.what)
                        self.resolved, self.reresolved = None, True
                        continue
                    raise self._status_error(exc) from None
                error: Exception = exc
                retry_after = exc.retry_after()
            except CannotConnect as exc:
                raise PresetsError("download_failed", f"{self.spec.what}: {exc}; this machine looks offline "
                                   f"({self.offset} bytes kept for the next try).", "connect to the network and run "
                                   "again: the download resumes where it stopped.") from None
            except (TransportError, *TRANSPORT_ERRORS) as exc:
                error, retry_after = exc, None
            failures = 0 if self.offset - before >= _MIN_PROGRESS else failures + 1
            if failures >= BACKOFF.attempts:
                raise self._final_error(error) from None
            delay = BACKOFF.delay(failures - 1 if failures else 0, retry_after)
            log.warning("%s: %s at byte %d; retrying in %.1f s", self.spec.what, _describe(error), self.offset, delay)
            get_host().throw_if_interrupted()
            time.sleep(delay)

    def _attempt(self) -> bool:
        """Stream one response into the part file. True when complete, False when it restarted."""
        response = self._open()
        with response:
            if response.status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != self.offset:
                    self._restart(f"the server resumed at byte {start}, not {self.offset}")
                    return False
                self.total = total
            else:
                if self.offset:
                    self._restart("the server ignored the Range request")
                length = response.headers.get("Content-Length")
                self.total = int(length) if length and length.isdigit() else None
            if "text/html" in (response.headers.get("Content-Type") or "").lower():
                raise self._payload_error("html")
            self._stream(response)
        if self.total is not None and self.offset < self.total:
            raise TransportError(f"connection closed after {self.offset} of {self.total} bytes")
        return True

    def _stream(self, response) -> None:  # noqa: ANN001
        """Append the response body to the part file, hashing as it goes. (A writer thread was
        slower: on a busy 2-core machine the GIL hand-offs cost more than the overlap gained.)"""
        view = memoryview(bytearray(CHUNK_BYTES))
        problem = None
        with open(self.part, "ab") as out:
            while True:
                count = response.readinto(view)
                if not count:
                    break
                chunk = view[:count]
                if len(self.head) < _HEAD_BYTES:  # check the payload before keeping any of it
                    self.head += bytes(chunk[: _HEAD_BYTES - len(self.head)])
                    problem = self._head_problem(final=False)
                    if problem:
                        break
                out.write(chunk)
                self.hasher.update(chunk)
                self.offset += count
                self.progress.update(self.offset, self.total)
            out.flush()
            os.fsync(out.fileno())
        problem = problem or self._head_problem(final=True)
        if problem:
            raise self._payload_error(problem)
        self.progress.update(self.offset, self.total, final=True)

    def _head_problem(self, final: bool) -> Optional[str]:
        if len(self.head) >= _HEAD_BYTES or final:
            return payload_problem(self.head)
        return None

    def _open(self):  # noqa: ANN202
        url = self.resolved or self.spec.url
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {"Accept-Encoding": "identity"}
            if host_of(url) == host_of(self.spec.url):
                headers.update(auth_headers(url))  # never to the storage host a redirect names
            if self.offset:
                headers["Range"] = f"bytes={self.offset}-"
            response = open_url(url, headers, STALL_TIMEOUT_S)
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise TransportError(f"HTTP {response.status} without a Location header")
            url = urljoin(url, location)
            self.resolved = url
            log.info("%s: download redirected to %s", self.spec.what, host_of(url))
        raise PresetsError("download_failed", f"{self.spec.what}: more than {_MAX_REDIRECTS} redirects.",
                           "check the URL.")

    def _restart(self, why: str) -> None:
        log.warning("%s: %s; starting over from byte 0", self.spec.what, why)
        self.part.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.head = b""

    def _range_complete(self, exc: HttpStatusError) -> bool:
        _, total = _content_range(exc.headers.get("Content-Range", "") if exc.headers else "")
        return total == self.offset

    def _status_error(self, exc: HttpStatusError) -> PresetsError:
        if self.spec.civitai:
            return error_for_status(exc, self.spec.what)
        if exc.status in (404, 410):
            return PresetsError("lora_not_found", f"{self.spec.what}: the server has no such file (HTTP {exc.status}).",
                                "check the URL.")
        fix = ("set HF_TOKEN for gated Hugging Face repos." if exc.status in (401, 403)
               else "check the URL and try again later.")
        return PresetsError("download_failed", f"{self.spec.what}: HTTP {exc.status} from {exc.host}.", fix)

    def _payload_error(self, problem: str) -> PresetsError:
        self.part.unlink(missing_ok=True)
        if problem == "html":
            if self.spec.civitai:
                return PresetsError("civitai_auth_required", f"Civitai sent a web page (usually its login page) "
                                    f"instead of {self.spec.what}.", KEY_FIX)
            return PresetsError("download_failed", f"the server sent a web page instead of {self.spec.what}.",
                                "check that the URL points straight at the .safetensors file.")
        if problem == "pickle":
            return PresetsError("lora_invalid", f"{self.spec.what} is a pickle/zip checkpoint, not safetensors; "
                                "pickle files can run code and are refused.", "use a .safetensors version of the LoRA.")
        return PresetsError("lora_invalid", f"{self.spec.what} is not a safetensors file.",
                            "check that the reference points at a .safetensors LoRA.")

    def _final_error(self, error: Exception) -> PresetsError:
        if isinstance(error, HttpStatusError):
            return self._status_error(error)
        return PresetsError("download_failed", f"{self.spec.what}: {_describe(error)} ({BACKOFF.attempts} attempts "
                            f"without progress; {self.offset} bytes kept for the next try).",
                            "check the network and run again: the download resumes where it stopped.")


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return "the server stopped sending data" if "timed out" in text.lower() else text


def _content_range(value: str) -> tuple[Optional[int], Optional[int]]:
    """(start, total) of ``bytes start-end/total`` or ``bytes */total``."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value.strip())
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(2)) if match.group(2).isdigit() else None
    return start, total
