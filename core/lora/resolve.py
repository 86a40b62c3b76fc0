"""From a reference (AIR, URL, Hugging Face file, local path) to a verified local LoRA file and
its metadata, downloading at most once and working offline once the file is here."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Optional
from urllib.parse import unquote, urlsplit

from ..civitai.air import LoraRef, civitai_hosts, format_air, parse_reference
from ..civitai.client import CivitaiClient, CivitaiFile, ModelVersion
from ..civitai.download import DownloadSpec, download_file, sanitize_filename
from ..civitai.transport import host_of
from ..errors import PresetsError
from ..files import write_atomically
from ..host import get_host
from .compat import refuse_other_family
from .library import (LoraRecord, download_folder, file_sha256, find_local, find_record, now_iso, read_record,
                      write_record)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedLora:
    path: Path
    sha256: str
    label: str  # for messages and logs
    base_model: str = ""  # Civitai's baseModel; empty when unknown
    trained_words: tuple[str, ...] = ()
    air: str = ""  # pinned: always carries the version
    version_id: Optional[int] = None
    source_url: str = ""

    @property
    def adapter_name(self) -> str:
        """Stable per file content, so the same LoRA is loaded once whatever its reference."""
        return f"dp_{self.sha256[:16]}"

    def provenance(self) -> tuple[tuple[str, str], ...]:
        items = (("name", self.path.name), ("sha256", self.sha256), ("air", self.air),
                 ("version_id", str(self.version_id or "")), ("source", self.source_url),
                 ("base_model", self.base_model))
        return tuple((key, value) for key, value in items if value)


def resolve_lora(text: str, dest: Optional[str] = None, family: Optional[str] = None) -> ResolvedLora:
    """Resolve ``text`` to a local, verified LoRA. ``dest`` (a catalog ``path``) names where a
    download goes, relative to the loras folder or, starting with ``loras/``, to the models folder.
    With ``family``, a Civitai LoRA whose metadata names another family is refused before its
    file is downloaded."""
    ref = parse_reference(text)
    target = _dest_path(dest) if dest else None
    if ref.kind == "local":
        path = find_local(ref.path)
        return _from_record(path, read_record(path), label=path.name)
    if ref.kind == "civitai":
        return _resolve_civitai(ref, target, family)
    if ref.kind == "huggingface":
        return _resolve_hf(ref, target)
    return _resolve_url(ref, target)


def _dest_path(dest: str) -> Path:
    relative = PurePosixPath(dest.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or relative.suffix.lower() != ".safetensors":
        raise PresetsError("preset_invalid", f"the LoRA path {dest!r} must be a relative .safetensors path inside "
                           "the models folder.", "use e.g. `loras/styles/name.safetensors` or `styles/name.safetensors`.")
    if relative.parts[0] == "loras":
        return get_host().models_dir() / relative
    return download_folder() / relative


def _from_record(path: Path, record: Optional[LoraRecord], label: str) -> ResolvedLora:
    if record is None:
        return ResolvedLora(path=path, sha256=file_sha256(path), label=label)
    return ResolvedLora(path=path, sha256=record.sha256, label=label, base_model=record.base_model,
                        trained_words=record.trained_words, air=record.air, version_id=record.version_id,
                        source_url=record.source_url)


def _civitai_label(version_id: Optional[int], model_name: str = "", version_name: str = "") -> str:
    name = f"{model_name} {version_name}".strip()
    return f"Civitai LoRA '{name}' (version {version_id})" if name else f"Civitai LoRA version {version_id}"


def _cached_civitai(ref: LoraRef, version_id: Optional[int]) -> Optional[ResolvedLora]:
    def match(record: LoraRecord) -> bool:
        if version_id is not None:
            return record.version_id == version_id and ref.file_id in (None, record.file_id)
        return record.model_id == ref.model_id

    found = find_record(match)
    if found is None:
        return None
    path, record = found
    return _from_record(path, record, _civitai_label(record.version_id, record.model_name, record.version_name))


def _resolve_civitai(ref: LoraRef, target: Optional[Path], family: Optional[str]) -> ResolvedLora:
    if ref.version_id is not None:  # a pinned version: the local copy is the answer, no network
        cached = _cached_civitai(ref, ref.version_id)
        if cached is not None:
            log.info("%s: using %s (no download)", cached.label, cached.path)
            return cached
    client = CivitaiClient()
    try:
        version, file = client.resolve(ref)
    except PresetsError as exc:
        if exc.code != "civitai_unavailable" or ref.version_id is not None:
            raise
        cached = _cached_civitai(ref, None)  # bare model id offline: the newest local version
        if cached is None:
            raise
        log.warning("Civitai is unreachable (%s); using the local %s", exc.message, cached.label)
        return cached
    cached = _cached_civitai(ref, version.id) if ref.version_id is None else None
    if cached is not None:
        log.info("%s: the default version is already here (%s)", cached.label, cached.path)
        return cached
    label = _civitai_label(version.id, version.model_name, version.name)
    if family is not None:
        refuse_other_family(family, label=label, base_model=version.base_model)
    dest = target or download_folder() / _civitai_filename(file, version)
    download_url = file.download_url if host_of(file.download_url) in civitai_hosts() else (
        f"{client.base}/api/download/models/{version.id}?fileId={file.id}")
    spec = DownloadSpec(url=download_url, what=label, sha256=file.sha256, size=file.size_bytes, civitai=True)
    done = download_file(spec, dest)
    record = write_record(done.path, LoraRecord(
        sha256=done.sha256, size=done.size, mtime_ns=0, source_url=download_url, air=_pinned_air(version, file, ref),
        model_id=version.model_id, version_id=version.id, file_id=file.id, model_name=version.model_name,
        version_name=version.name, base_model=version.base_model, trained_words=version.trained_words,
        retrieved_at=now_iso()))
    return _from_record(done.path, record, label)


def _civitai_filename(file: CivitaiFile, version: ModelVersion) -> str:
    # Creators often reuse one file name across versions: the version id keeps them apart.
    name = sanitize_filename(file.name, fallback=f"civitai_{version.model_id}")
    return f"{name[: -len('.safetensors')]}-v{version.id}.safetensors"


def _pinned_air(version: ModelVersion, file: CivitaiFile, ref: LoraRef) -> str:
    if version.air and ref.file_id is None:
        return version.air
    ecosystem = version.air.split(":")[2] if version.air.count(":") >= 5 else ref.ecosystem
    return format_air(version.model_id, version.id, ref.file_id, ecosystem)


def _resolve_url(ref: LoraRef, target: Optional[Path]) -> ResolvedLora:
    url = ref.url
    found = find_record(lambda record: record.source_url == url)
    if found is not None and (target is None or found[0] == target.resolve()):
        path, record = found
        log.info("%s: using %s (no download)", url, path)
        return _from_record(path, record, label=path.name)
    stem = sanitize_filename(unquote(PurePosixPath(urlsplit(url).path).name))[: -len(".safetensors")]
    # Different URLs may end in the same file name: a short hash of the URL keeps them apart.
    dest = target or download_folder() / f"{stem}-{hashlib.sha1(url.encode('utf-8')).hexdigest()[:8]}.safetensors"
    done = download_file(DownloadSpec(url=url, what=f"the LoRA at {url}"), dest)
    record = write_record(done.path, LoraRecord(sha256=done.sha256, size=done.size, mtime_ns=0, source_url=url,
                                                retrieved_at=now_iso()))
    return _from_record(done.path, record, label=done.path.name)


def _resolve_hf(ref: LoraRef, target: Optional[Path]) -> ResolvedLora:
    """Through the Hugging Face cache; a catalog ``path`` gets a copy (with a sidecar, so later
    runs need neither the Hub nor its cache)."""
    from .hub import hub_lora_file, hub_sha256

    url = ref.url
    if target is not None:
        record = read_record(target) if target.is_file() else None
        if record is not None and record.source_url == url:
            log.info("%s: using %s (no download)", url, target)
            return _from_record(target, record, label=target.name)
    path = hub_lora_file(ref.repo_id, ref.path, ref.revision)
    label = f"Hugging Face LoRA {ref.repo_id}/{ref.path}"
    if target is None:
        return ResolvedLora(path=path, sha256=hub_sha256(path) or file_sha256(path), label=label, source_url=url)
    target.parent.mkdir(parents=True, exist_ok=True)

    def copy(out: BinaryIO) -> None:
        with open(path, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)

    write_atomically(target, copy)
    record = write_record(target, LoraRecord(sha256=hub_sha256(path) or file_sha256(target), size=0, mtime_ns=0,
                                             source_url=url, retrieved_at=now_iso()))
    return _from_record(target, record, label=label)
