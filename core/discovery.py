"""What models are on this machine, by family: diffusers folders, single-file checkpoints,
Hugging Face cache entries and LoRAs (with their sidecar metadata), and the presets that use each.

Nothing here loads weights or unpickles anything: a family comes from a pipeline's
``model_index.json`` (its ``_class_name``) or from the key names in a safetensors JSON header.
Pickle checkpoints (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are listed as unsupported without
being opened. Importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import PresetsError
from .host import get_host

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KINDS = ("diffusers", "checkpoint", "hub", "lora")
INDEX_FILES = ("model_index.json", "modular_model_index.json")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
REDUX = "flux_redux"

# Denoiser key names in single-file checkpoints (original and diffusers layouts), most specific
# first: Chroma and Flux share the double/single block names, SDXL's UNet also has
# ``transformer_blocks`` (inside ``down_blocks``), so those rules come before Anima's.
_CHECKPOINT_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"distilled_guidance_layer"), "chroma"),
    (re.compile(r"(^|\.)(double_blocks|single_blocks|single_transformer_blocks)\.\d"), "flux"),
    (re.compile(r"(^|\.)(noise_refiner|context_refiner)\.\d"), "zimage"),
    (re.compile(r"^conditioner\.embedders\.1\.|^model\.diffusion_model\.label_emb\.|^add_embedding\."), "sdxl"),
    (re.compile(r"llm_adapter\.|^(net\.)?blocks\.\d+\.(self|cross)_attn\.|^transformer_blocks\.\d+\.attn[12]\."),
     "anima"),
    (re.compile(r"^cond_stage_model\.transformer\."), "sd1"),
    (re.compile(r"^cond_stage_model\.model\."), "sd2"),
)


@dataclass
class LoraInfo:
    """What a LoRA's sidecar (written when it was downloaded) says about it."""

    air: str = ""
    base_model: str = ""
    trigger_words: list[str] = field(default_factory=list)
    model_id: Optional[int] = None
    version_id: Optional[int] = None
    source_url: str = ""


@dataclass
class ModelEntry:
    """One local model. ``name`` is what a preset source, a model override or a LoRA reference
    uses for it: a folder or file name relative to its models folder, or a hub repo id."""

    kind: str  # one of KINDS
    name: str
    path: str
    family: Optional[str]  # a family id, another architecture (sd1, flux2, ...) or None: unknown
    supported: bool  # whether a family of this pack can load it
    detail: str  # pipeline class, "unsupported, pickle", "no sidecar", ...
    revision: Optional[str] = None  # hub entries
    presets: list[str] = field(default_factory=list)  # ids of the presets that use it
    lora: Optional[LoraInfo] = None  # LoRAs: sidecar metadata (None: no sidecar)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _family_names() -> tuple[str, ...]:
    from .families import FAMILIES

    return FAMILIES


def pipeline_families() -> dict[str, str]:
    """diffusers pipeline class name -> family (plus Flux Redux's prior pipeline)."""
    from .families import FAMILIES, get_family

    mapping = {get_family(name).pipeline_class: name for name in FAMILIES}
    mapping["FluxPriorReduxPipeline"] = REDUX
    return mapping


def _read_index(folder: Path) -> Optional[dict]:
    for name in INDEX_FILES:
        index = folder / name
        if index.is_file():
            try:
                data = json.loads(index.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.info("unreadable %s: %s", index, exc)
                return {}
            return data if isinstance(data, dict) else {}
    return None


def _family_of_index(index: dict) -> tuple[Optional[str], str]:
    class_name = str(index.get("_class_name", ""))
    return pipeline_families().get(class_name), class_name or "no _class_name"


def checkpoint_family(path: Path) -> Optional[str]:
    """The family of a single-file checkpoint from its tensor names (the safetensors header
    only, never the tensors), or None when unknown."""
    from .lora.compat import read_safetensors_header

    header = read_safetensors_header(path)
    keys = [key for key in header if key != "__metadata__"]
    for pattern, family in _CHECKPOINT_RULES:
        if any(pattern.search(key) for key in keys):
            return family
    return None


def _is_supported(family: Optional[str]) -> bool:
    return family in _family_names() or family == REDUX


def _walk(folder: Path) -> Iterable[Path]:
    return sorted(folder.rglob("*")) if folder.is_dir() else ()


def scan_diffusers(folders: list[Path]) -> list[ModelEntry]:
    """Pipeline folders (with a model index) under each diffusers models folder."""
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for root in folders:
        if not root.is_dir():
            continue
        for index_path in sorted(p for name in INDEX_FILES for p in root.rglob(name)):
            folder = index_path.parent
            if folder in seen:
                continue  # a folder with both index files
            seen.add(folder)
            family, detail = _family_of_index(_read_index(folder) or {})
            entries.append(ModelEntry("diffusers", folder.relative_to(root).as_posix(), str(folder), family,
                                      _is_supported(family), detail))
    return entries


def scan_checkpoints(folders: list[Path]) -> list[ModelEntry]:
    """Single-file checkpoints: safetensors by header; pickles listed, never opened."""
    entries: list[ModelEntry] = []
    for root in folders:
        for path in _walk(root):
            if not path.is_file():
                continue
            suffix = path.suffix.lower()
            name = path.relative_to(root).as_posix()
            if suffix in PICKLE_SUFFIXES:
                entries.append(ModelEntry("checkpoint", name, str(path), None, False, "unsupported, pickle"))
            elif suffix in SAFETENSORS_SUFFIXES:
                try:
                    family = checkpoint_family(path)
                except PresetsError:
                    entries.append(ModelEntry("checkpoint", name, str(path), None, False, "unreadable safetensors"))
                    continue
                detail = "safetensors" if family else "safetensors, unknown architecture"
                entries.append(ModelEntry("checkpoint", name, str(path), family, _is_supported(family), detail))
    return entries


def hub_cache_dir() -> Path:
    from .families._loading import hub_cache_dir as configured

    return Path(configured())


def scan_hub_cache(cache: Optional[Path] = None) -> list[ModelEntry]:
    """Model snapshots in the local Hugging Face cache (``models--org--name/snapshots/<commit>``).
    The revision shown is a ref (``main``) pointing at the snapshot, else its commit."""
    cache = hub_cache_dir() if cache is None else cache
    entries: list[ModelEntry] = []
    if not cache.is_dir():
        return entries
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        refs = {}
        for ref in sorted((repo_dir / "refs").rglob("*")) if (repo_dir / "refs").is_dir() else ():
            if ref.is_file():
                refs.setdefault(ref.read_text(encoding="utf-8").strip(), ref.relative_to(repo_dir / "refs").as_posix())
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            if not snapshot.is_dir():
                continue
            index = _read_index(snapshot)
            if index is not None:
                family, detail = _family_of_index(index)
            else:
                family, detail = _single_file_family(snapshot)
            entries.append(ModelEntry("hub", repo_id, str(snapshot), family, _is_supported(family), detail,
                                      revision=refs.get(snapshot.name, snapshot.name)))
    return entries


def _single_file_family(snapshot: Path) -> tuple[Optional[str], str]:
    """A repo without a pipeline index: the family of its first recognised top-level checkpoint."""
    for path in sorted(snapshot.iterdir()):
        if path.suffix.lower() in SAFETENSORS_SUFFIXES and path.is_file():
            try:
                family = checkpoint_family(path)
            except PresetsError:
                continue
            if family:
                return family, f"single file {path.name}"
    return None, "no pipeline index"


def scan_loras(folders: list[Path]) -> list[ModelEntry]:
    """LoRA files with their sidecar metadata; the family comes from the sidecar's base model,
    else from the file's header."""
    from .lora.compat import architecture_of_base_model, detect_architecture
    from .lora.library import read_record

    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for root in folders:
        for path in _walk(root):
            if not path.is_file() or path.suffix.lower() not in SAFETENSORS_SUFFIXES:
                continue
            name = path.relative_to(root).as_posix()
            if name in seen:
                continue  # an earlier folder wins, as when loading
            seen.add(name)
            record = read_record(path)
            info = None
            family = None
            if record is not None:
                info = LoraInfo(air=record.air, base_model=record.base_model, trigger_words=list(record.trained_words),
                                model_id=record.model_id, version_id=record.version_id, source_url=record.source_url)
                family = architecture_of_base_model(record.base_model)
            detail = "sidecar" if record is not None else "no sidecar"
            if family is None:
                try:
                    family = detect_architecture(path)
                except PresetsError:
                    detail = "unreadable safetensors"
            entries.append(ModelEntry("lora", name, str(path), family, _is_supported(family) and family != REDUX,
                                      detail, lora=info))
    return entries


def _mark_presets(entries: list[ModelEntry]) -> None:
    """Fill ``presets``: the presets whose source (or LoRA list) names each entry."""
    from .presets import registry

    try:
        presets = registry().all()
    except PresetsError as exc:  # a broken user preset must not hide the models
        log.warning("%s", exc)
        return
    host = get_host()
    diffusers_folders, checkpoint_folders = host.model_folders("diffusers"), host.model_folders("checkpoints")
    for preset in presets:
        source = preset.source
        for entry in entries:
            if entry.kind == "diffusers" and "folder" in source:
                used = _same_path(source["folder"], entry.path, diffusers_folders)
            elif entry.kind == "checkpoint" and "file" in source and "repo" not in source:
                used = _same_path(source["file"], entry.path, checkpoint_folders)
            elif entry.kind == "hub" and "repo" in source:
                used = source["repo"] == entry.name and source.get("revision", "main") in (entry.revision,
                                                                                          Path(entry.path).name)
            elif entry.kind == "lora":
                used = any(lora_matches(str(item.get("ref", "")), entry) for item in preset.loras)
            else:
                used = False
            if used:
                entry.presets.append(preset.id)


def _same_path(given: str, path: str, roots: list[Path]) -> bool:
    candidate = Path(given).expanduser()
    candidates = [candidate] if candidate.is_absolute() else [root / given for root in roots]
    target = Path(path).resolve()
    return any(c.exists() and c.resolve() == target for c in candidates)


def lora_matches(reference: str, entry: ModelEntry) -> bool:
    """Whether a LoRA reference (local name, AIR, URL) denotes this local LoRA."""
    from .civitai.air import parse_reference

    try:
        ref = parse_reference(reference)
    except PresetsError:
        return False
    if ref.kind == "local":
        return ref.path.replace("\\", "/") in (entry.name, entry.path)
    info = entry.lora
    if info is None:
        return False
    if ref.kind == "civitai":
        if ref.version_id is not None:
            return info.version_id == ref.version_id
        return info.model_id == ref.model_id
    return bool(info.source_url) and info.source_url == ref.url


def discover(family: Optional[str] = None, kinds: tuple[str, ...] = KINDS) -> list[ModelEntry]:
    """Every local model of ``kinds`` (optionally of one family), sorted by family, kind and name."""
    host = get_host()
    entries: list[ModelEntry] = []
    if "diffusers" in kinds:
        entries += scan_diffusers(host.model_folders("diffusers"))
    if "checkpoint" in kinds:
        entries += scan_checkpoints(host.model_folders("checkpoints"))
    if "hub" in kinds:
        entries += scan_hub_cache()
    if "lora" in kinds:
        entries += scan_loras(host.model_folders("loras"))
    if family is not None:
        entries = [e for e in entries if e.family == family]
    _mark_presets(entries)
    entries.sort(key=lambda e: (e.family or "~", KINDS.index(e.kind), e.name.lower(), e.revision or ""))
    return entries


def listing(family: Optional[str] = None) -> dict[str, Any]:
    """The stable JSON form of :func:`discover` (``schema`` bumps on incompatible changes)."""
    return {"schema": SCHEMA_VERSION, "models": [e.to_dict() for e in discover(family)]}
