"""The LoRA catalog: ``presets/loras.yaml`` (shipped) plus ``loras.yaml`` in the user presets
directory, whose entries replace shipped ones with the same theme and label.

Each entry: ``label``, ``base_architecture`` (a family name, or a Civitai base model such as
``Illustrious``), ``theme``, ``air`` and/or ``path`` (with both, the AIR downloads to that path),
``prompt`` (trigger words; empty = Civitai's trainedWords), ``negative_prompt``, ``settings``
{``strength``, ``guidance_scale``, ``clip_skip``} and ``notes``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import PresetsError
from ..host import get_host
from ..presets import FAMILY_NAMES, SHIPPED_DIR
from .compat import architecture_of_base_model

CATALOG_FILE = "loras.yaml"
_FIELDS = {"label", "base_architecture", "theme", "air", "path", "prompt", "negative_prompt", "settings", "notes"}
_SETTINGS = {"strength", "guidance_scale", "clip_skip"}


@dataclass(frozen=True)
class CatalogEntry:
    label: str
    family: str
    theme: str
    air: Optional[str]
    path: Optional[str]
    prompt: str
    negative_prompt: str
    strength: float
    guidance_scale: Optional[float]
    clip_skip: Optional[int]
    notes: str

    @property
    def choice(self) -> str:
        """How the entry appears in the loader's list."""
        return f"{self.theme} / {self.label} [{self.family}]"

    @property
    def reference(self) -> str:
        return self.air or self.path or ""

    @property
    def download_path(self) -> Optional[str]:
        """Where the AIR downloads to, when the entry names both."""
        return self.path if self.air and self.path else None


def _fail(path: Path, index: int, field: str, value: Any, allowed: str) -> PresetsError:
    return PresetsError("preset_invalid", f"{path}: LoRA entry {index + 1}, field '{field}' has the value {value!r}; "
                        f"allowed: {allowed}.", f"edit {path.name} so that '{field}' is {allowed}.")


def _number(path: Path, index: int, name: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise _fail(path, index, f"settings.{name}", value, f"{'an integer' if integer else 'a number'} from {low} "
                    f"to {high}")
    return value


def _entry(path: Path, index: int, raw: Any) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise _fail(path, index, "<entry>", raw, "a mapping")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise _fail(path, index, sorted(unknown)[0], raw[sorted(unknown)[0]], f"one of the fields {', '.join(sorted(_FIELDS))}")
    for name in ("label", "base_architecture", "theme"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise _fail(path, index, name, raw.get(name), "non-empty text")
    for name in ("air", "path", "prompt", "negative_prompt", "notes"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise _fail(path, index, name, raw[name], "text")
    if not (raw.get("air") or raw.get("path")):
        raise _fail(path, index, "air", None, "an AIR or URL in `air`, a file in `path`, or both")
    family = raw["base_architecture"].strip()
    if family not in FAMILY_NAMES:
        family = architecture_of_base_model(family) or family
        if family not in FAMILY_NAMES:
            raise _fail(path, index, "base_architecture", raw["base_architecture"],
                        f"one of {', '.join(FAMILY_NAMES)} or a Civitai base model of those (e.g. Illustrious)")
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict) or set(settings) - _SETTINGS:
        raise _fail(path, index, "settings", settings, "a mapping with strength, guidance_scale, clip_skip")
    strength = _number(path, index, "strength", settings.get("strength", 1.0), 0.0, 2.0)
    return CatalogEntry(
        label=raw["label"].strip(), family=family, theme=raw["theme"].strip(), air=(raw.get("air") or "").strip() or None,
        path=(raw.get("path") or "").strip() or None, prompt=(raw.get("prompt") or "").strip(),
        negative_prompt=(raw.get("negative_prompt") or "").strip(), strength=float(strength),
        guidance_scale=_number(path, index, "guidance_scale", settings.get("guidance_scale"), 0.0, 30.0),
        clip_skip=_number(path, index, "clip_skip", settings.get("clip_skip"), 1, 12, integer=True),
        notes=(raw.get("notes") or "").strip(),
    )


def read_catalog(path: Path) -> list[CatalogEntry]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PresetsError("preset_invalid", f"{path} cannot be read: {' '.join(str(exc).split())}.",
                           f"fix the YAML in {path.name}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("loras", []), list):
        raise PresetsError("preset_invalid", f"{path} must be a mapping with a `loras:` list.",
                           f"see the comment at the top of the shipped {CATALOG_FILE}.")
    return [_entry(path, index, raw) for index, raw in enumerate(data.get("loras") or [])]


@functools.lru_cache(maxsize=8)
def _read_unless_unchanged(path: Path, mtime_ns: int) -> tuple[CatalogEntry, ...]:
    """read_catalog, parsed again only when the file changes (INPUT_TYPES lists the catalog often)."""
    return tuple(read_catalog(path))


def catalog() -> list[CatalogEntry]:
    """Shipped entries, then the user's (a user entry replaces a shipped one of the same choice)."""
    entries: dict[str, CatalogEntry] = {}
    user_dir = get_host().user_presets_dir()
    for folder in (SHIPPED_DIR, user_dir):
        if folder is not None and (folder / CATALOG_FILE).is_file():
            path = folder / CATALOG_FILE
            for entry in _read_unless_unchanged(path, path.stat().st_mtime_ns):
                entries[entry.choice] = entry
    return list(entries.values())


def find_entry(choice: str) -> Optional[CatalogEntry]:
    return next((entry for entry in catalog() if entry.choice == choice), None)
