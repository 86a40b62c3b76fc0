"""The LoRA files on this machine and what is known about them.

Every downloaded LoRA gets a sidecar ``<file>.dp-meta.json`` (AIR, version id, baseModel,
trainedWords, sha256, source URL, retrieval time, size and mtime), written atomically after
the file verified. A later run finds the file through its sidecar without any network, and
trusts the recorded sha256 while size and mtime are unchanged (no re-hashing).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Callable, Optional

from ..civitai.air import SAFETENSORS_SUFFIXES
from ..civitai.download import sha256_file
from ..errors import PresetsError
from ..files import write_atomically
from ..host import get_host

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".dp-meta.json"
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


@dataclass(frozen=True)
class LoraRecord:
    sha256: str
    size: int
    mtime_ns: int
    source_url: str = ""  # never carries a key: keys travel in headers only
    air: str = ""
    model_id: Optional[int] = None
    version_id: Optional[int] = None
    file_id: Optional[int] = None
    model_name: str = ""
    version_name: str = ""
    base_model: str = ""
    trained_words: tuple[str, ...] = ()
    retrieved_at: str = ""

    def matches(self, path: Path) -> bool:
        """Whether ``path`` is still the file this record describes (same size and mtime)."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return stat.st_size == self.size and stat.st_mtime_ns == self.mtime_ns


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_record(path: Path, record: LoraRecord) -> LoraRecord:
    """Write ``record`` for ``path`` (stamped with its current size and mtime) atomically."""
    stat = path.stat()
    record = replace(record, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    write_atomically(sidecar_of(path), json.dumps({**asdict(record), "file": path.name}, indent=2))
    return record


def read_record(path: Path) -> Optional[LoraRecord]:
    """The sidecar record of ``path`` if it exists, parses and still matches the file."""
    sidecar = sidecar_of(path)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        known = {f.name for f in fields(LoraRecord)}
        record = LoraRecord(**{k: v for k, v in data.items() if k in known})
        record = replace(record, trained_words=tuple(record.trained_words))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring the unreadable LoRA sidecar %s: %s", sidecar, exc)
        return None
    if not record.matches(path):
        log.info("%s changed since its sidecar was written; its metadata is not used", path.name)
        return None
    return record


def loras_folders() -> list[Path]:
    return get_host().model_folders("loras")


def download_folder() -> Path:
    """Where downloaded LoRAs go: the first loras folder."""
    return loras_folders()[0]


def find_record(match: Callable[[LoraRecord], bool]) -> Optional[tuple[Path, LoraRecord]]:
    """The newest local LoRA whose sidecar record satisfies ``match``."""
    found: list[tuple[str, Path, LoraRecord]] = []
    for folder in loras_folders():
        if not folder.is_dir():
            continue
        for sidecar in folder.rglob(f"*{SIDECAR_SUFFIX}"):
            path = sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])
            record = read_record(path)
            if record is not None and match(record):
                found.append((record.retrieved_at, path, record))
    if not found:
        return None
    _, path, record = max(found, key=lambda item: item[0])
    return path, record


def file_sha256(path: Path) -> str:
    """SHA256 of a LoRA file: from its sidecar while the file is unchanged, else hashed once
    per process (keyed by path, size and mtime)."""
    record = read_record(path)
    if record is not None:
        return record.sha256
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key not in _hash_cache:
            _hash_cache[key] = sha256_file(path)
        return _hash_cache[key]


def _safe_relative(text: str) -> Optional[PurePath]:
    relative = PurePath(text.replace("\\", "/"))
    return None if relative.is_absolute() or ".." in relative.parts else relative


def local_candidates(text: str) -> list[Path]:
    """Where a local reference may live: as given if absolute, else under each loras folder and
    under the models folder (``MODEL_BASE_PATH``-relative, e.g. ``loras/x.safetensors``)."""
    given = Path(text).expanduser()
    if given.is_absolute():
        return [given]
    relative = _safe_relative(text)
    if relative is None:
        raise PresetsError("lora_invalid", f"the LoRA path {text!r} leaves the models folder.",
                           "give a path inside the loras folder, relative to MODEL_BASE_PATH, or an absolute path.")
    return [folder / relative for folder in loras_folders()] + [get_host().models_dir() / relative]


def find_local(text: str) -> Path:
    """The local LoRA file for ``text``, or ``lora_not_found`` naming every place looked."""
    candidates = local_candidates(text)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    places = ", ".join(str(c) for c in candidates)
    raise PresetsError("lora_not_found", f"the LoRA file {text!r} does not exist (looked in: {places}).",
                       "put the file into ComfyUI's loras folder (models/loras), or give its Civitai AIR or URL.")


def list_local() -> list[str]:
    """Relative names (``/``-separated) of the safetensors files in every loras folder."""
    return sorted((name for name in get_host().model_files("loras") if name.lower().endswith(SAFETENSORS_SUFFIXES)),
                  key=str.lower)
