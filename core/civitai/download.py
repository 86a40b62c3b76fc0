"""Verified, resumable single-file downloads.

One call of :func:`download_file` resolves the first URL's redirect once (Civitai answers with a
short-lived signed storage URL), streams into ``<final>.part`` beside the destination, resumes
with ``Range`` after a cut, refuses HTML and pickle payloads, checks size and SHA256, and only
then renames the file into place. A lock file makes a second caller (thread or process) wait
and then reuse the finished file instead of downloading it again.
"""

from __future__ import annotations

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
from .air import hf_endpoint
from .client import KEY_FIX, auth_headers, error_for_status
from .transport import (BACKOFF, REDIRECT_STATUSES, TRANSPORT_ERRORS, HttpStatusError, TransportError, host_of,
                        open_url)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
STALL_TIMEOUT_S = 60.0  # no byte for this long = a cut; module-level so tests can shrink it
SIZE_TOLERANCE = 1024  # Civitai's sizeKB is a rounded float
_PROGRESS_EVERY_S = 0.25
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


@contextmanager
def file_lock(target: Path, poll_s: float = 0.1) -> Iterator[None]:
    """Hold an exclusive lock for ``target`` across threads and processes. The OS releases it
    if the holder dies, so a crashed download never leaves a stale lock."""
    digest = hashlib.sha1(str(target.resolve()).encode("utf-8")).hexdigest()[:20]
    lock_path = get_host().cache_dir() / "locks" / f"{digest}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        waited = False
        while not _try_lock(handle):
            if not waited:
                log.info("waiting for another download of %s to finish", target.name)
                waited = True
            get_host().throw_if_interrupted()
            time.sleep(poll_s)
        try:
            yield
        finally:
            _unlock(handle)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle) -> bool:  # noqa: ANN001
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(handle) -> None:  # noqa: ANN001
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(handle) -> bool:  # noqa: ANN001
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: excludes threads too
            return True
        except BlockingIOError:
            return False

    def _unlock(handle) -> None:  # noqa: ANN001
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _credentials(url: str) -> dict[str, str]:
    token = os.environ.get("HF_TOKEN", "").strip()
    if token and host_of(url) == host_of(hf_endpoint()):
        return {"Authorization": f"Bearer {token}"}
    return auth_headers(url)


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
        self.progress = None
        self.last_report = 0.0
        self.head = b""  # the first bytes, checked before the rest is written
        if part.exists():
            with open(part, "rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    if not self.offset:
                        self.head = block[:_HEAD_BYTES]
                    self.hasher.update(block)
                    self.offset += len(block)
            log.info("resuming %s at byte %d", spec.what, self.offset)

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
        if self.progress is None and self.total:
            self.progress = get_host().progress(self.total)
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
                self._report()
            out.flush()
            os.fsync(out.fileno())
        problem = problem or self._head_problem(final=True)
        if problem:
            raise self._payload_error(problem)
        self._report(force=True)

    def _head_problem(self, final: bool) -> Optional[str]:
        if len(self.head) >= _HEAD_BYTES or final:
            return payload_problem(self.head)
        return None

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self.last_report >= _PROGRESS_EVERY_S):
            self.last_report = now
            self.progress.update_absolute(self.offset, self.total)

    def _open(self):  # noqa: ANN202
        url = self.resolved or self.spec.url
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {"Accept-Encoding": "identity"}
            if host_of(url) == host_of(self.spec.url):
                headers.update(_credentials(url))  # never to the storage host a redirect names
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
