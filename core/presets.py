"""Presets: a model family, its weights and the generation parameters it fixes.

Layout: ``presets/<folder>/<name>.yaml``; the preset id is the path without extension
(``sdxl/illustrious``). Configuration is layered, later layers override earlier ones:

1. the family base ``<family>/_family.yaml`` (shipped, then the user's),
2. the preset named by ``extends:`` (its resolved fields, never its ``default`` flag),
3. the shipped preset file,
4. the user's file with the same id (user presets directory: ``PRESETS_DIR``, or
   ``models/diffusers_presets`` inside ComfyUI).

A malformed preset raises ``preset_invalid`` naming the file, the field, the value and what
is allowed. Steps, CFG and sampler are fixed here; no node input can change them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from .errors import PresetsError
from .families.base import check_size_rule
from .lora.compat import lineage_names

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "presets"
FAMILY_FILE = "_family.yaml"
FAMILY_NAMES = ("sdxl", "chroma", "flux", "zimage", "anima")
DTYPES = ("float32", "bfloat16", "float16")
PROMPT_STYLES = ("tags", "natural")
SAMPLERS = ("euler_a", "euler", "dpmpp_2m", "ddim")
TINY_SIZE = 64

# field -> (python types, description of what is allowed). Every key a preset may have.
_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "family": ((str,), f"one of {', '.join(FAMILY_NAMES)}"),
    "extends": ((str,), "the id of another preset"),
    "description": ((str,), "text"),
    "license": ((str,), "text"),
    "default": ((bool,), "true or false"),
    "source": ((dict,), "a mapping: {repo, revision[, file, config]}, {folder}, {file, config} or {tiny: true}"),
    "redux": ((dict,), "a weights source mapping like `source`, for Flux Redux"),
    "dtype": ((str,), f"one of {', '.join(DTYPES)}"),
    "steps": ((int,), "an integer from 1 to 200"),
    "cfg": ((int, float), "a number from 0 to 30"),
    "sampler": ((str, type(None)), f"null (the pipeline's scheduler) or one of {', '.join(SAMPLERS)}"),
    "width": ((int,), "an integer that fits the size rule"),
    "height": ((int,), "an integer that fits the size rule"),
    "size": ((dict,), "a mapping {multiple, min, max} of positive integers"),
    "negative_prompt": ((bool,), "true or false (whether the family takes negative prompts)"),
    "prompt_style": ((str,), f"one of {', '.join(PROMPT_STYLES)}"),
    "prompt_template": ((str,), "text containing {prompt} exactly once"),
    "default_negative": ((str,), "text"),
    "loras_supported": ((bool,), "true or false"),
    "loras": ((list,), "a list of {ref, triggers, weight, trigger_weight} mappings"),
    "clip_skip": ((int, type(None)), "null or an integer from 1 to 12"),
    "call_args": ((dict,), "a mapping of extra keyword arguments for the pipeline call"),
    "lineage": ((str, type(None)), "null or the Civitai lineage of the weights, one of the family's: " + "; ".join(
        f"{', '.join(lineage_names(family))} ({family})" for family in FAMILY_NAMES if lineage_names(family))),
}
_REQUIRED = ("family", "source", "dtype", "steps", "cfg", "width", "height", "size", "negative_prompt",
             "prompt_style", "prompt_template")
_SOURCE_KEYS = {"repo", "revision", "file", "config", "folder", "tiny"}


@dataclass(frozen=True)
class SizeRule:
    multiple: int
    min: int
    max: int

    def check(self, family: str, width: int, height: int) -> None:
        check_size_rule(family, width, height, self.multiple, self.min, self.max)


@dataclass(frozen=True)
class Preset:
    id: str
    family: str
    description: str
    license: str
    default: bool
    source: dict  # as written; resolved to a ModelSource by resolve_source()
    dtype: str
    steps: int
    cfg: float
    sampler: Optional[str]
    width: int
    height: int
    size: SizeRule
    negative_prompt: bool
    prompt_style: str
    prompt_template: str
    default_negative: str
    loras_supported: bool
    clip_skip: Optional[int]
    loras: tuple = ()
    call_args: dict = field(default_factory=dict)
    redux: Optional[dict] = None
    lineage: Optional[str] = None  # Civitai lineage (illustrious, pony, ...): LoRAs of another one warn
    files: tuple[str, ...] = ()  # the files this preset was built from, in layer order

    @property
    def is_tiny(self) -> bool:
        return bool(self.source.get("tiny"))

    @property
    def sampler_label(self) -> str:
        return self.sampler or "pipeline default"

    def with_tiny_source(self) -> "Preset":
        """The same fixed parameters on the family's tiny random-weight model (the ``tiny``
        override). Tiny models are float32 and default to 64x64: they exist to exercise the
        whole path quickly, and their position embeddings do not cover real sizes."""
        if self.is_tiny:
            return self
        tiny_redux = {"tiny": True} if self.redux is not None else None
        return replace(self, source={"tiny": True}, dtype="float32", redux=tiny_redux, width=TINY_SIZE,
                       height=TINY_SIZE)

    def render_prompt(self, prompt: str) -> str:
        return self.prompt_template.replace("{prompt}", prompt.strip()).strip(" ,")

    def render_negative(self, negative: str) -> str:
        parts = [part.strip() for part in (self.default_negative, negative) if part and part.strip()]
        return ", ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "steps": self.steps,
            "cfg": self.cfg,
            "sampler": self.sampler_label,
            "source": describe_source(self.source),
            "dtype": self.dtype,
            "width": self.width,
            "height": self.height,
            "default": self.default,
            "description": self.description,
        }


def describe_source(source: dict) -> str:
    if source.get("tiny"):
        return "tiny (random weights)"
    if "repo" in source:
        text = f"{source['repo']}@{source.get('revision', 'main')}"
        return f"{text}/{source['file']}" if "file" in source else text
    if "folder" in source:
        return str(source["folder"])
    return str(source.get("file"))


class _Raw:
    """One YAML file's mapping plus where it came from."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data


def _fail(path: Path, field_name: str, value: Any, allowed: str) -> PresetsError:
    return PresetsError(
        "preset_invalid",
        f"{path}: field '{field_name}' has the value {value!r}; allowed: {allowed}.",
        f"edit {path.name} so that '{field_name}' is {allowed}.",
    )


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PresetsError(
            "preset_invalid", f"{path} is not valid YAML: {exc}".replace("\n", " "),
            f"fix the YAML syntax in {path.name}.",
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, "<top level>", data, "a mapping of preset fields")
    for key, value in data.items():
        if key not in _FIELDS:
            raise PresetsError(
                "preset_invalid", f"{path}: unknown field '{key}'.",
                f"remove it or use one of: {', '.join(sorted(_FIELDS))}.",
            )
        types, allowed = _FIELDS[key]
        # bool is an int subclass: reject true/false where a number is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _fail(path, key, value, allowed)
    return data


def _scan(root: Optional[Path]) -> tuple[dict[str, _Raw], dict[str, _Raw]]:
    """Return ({preset id: file}, {family: family base file}) under a presets root."""
    presets: dict[str, _Raw] = {}
    bases: dict[str, _Raw] = {}
    if root is None or not root.is_dir():
        return presets, bases
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if len(rel.parts) != 2:
            continue  # loras.yaml (the LoRA catalog) and deeper files are not presets
        if rel.name == FAMILY_FILE:
            bases[rel.parts[0]] = _Raw(path, _read_yaml(path))
        elif not rel.name.startswith(("_", ".")):
            presets[rel.with_suffix("").as_posix()] = _Raw(path, _read_yaml(path))
    return presets, bases


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        # `source` is replaced whole: mixing keys of two sources would describe neither.
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("source", "redux"):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class PresetRegistry:
    """All presets visible from the shipped folder and one user folder."""

    def __init__(self, shipped_dir: Path = SHIPPED_DIR, user_dir: Optional[Path] = None) -> None:
        self.shipped_dir = shipped_dir
        self.user_dir = user_dir
        shipped, shipped_bases = _scan(shipped_dir)
        user, user_bases = _scan(user_dir)
        self._layers: dict[str, list[_Raw]] = {}
        for preset_id in sorted(set(shipped) | set(user)):
            self._layers[preset_id] = [raw for raw in (shipped.get(preset_id), user.get(preset_id)) if raw]
        self._bases: dict[str, list[_Raw]] = {}
        for family in set(shipped_bases) | set(user_bases):
            self._bases[family] = [raw for raw in (shipped_bases.get(family), user_bases.get(family)) if raw]
        self._user_ids = set(user)
        self._resolved: dict[str, Preset] = {}
        for preset_id in self._layers:
            self._resolve(preset_id, ())
        self._check_defaults()

    def ids(self) -> list[str]:
        return sorted(self._resolved)

    def all(self) -> list[Preset]:
        return [self._resolved[preset_id] for preset_id in self.ids()]

    def get(self, preset_id: str) -> Preset:
        preset_id = preset_id.replace("\\", "/").removesuffix(".yaml")
        if preset_id not in self._resolved:
            raise PresetsError(
                "preset_not_found",
                f"there is no preset '{preset_id}'.",
                f"use one of: {', '.join(self.ids())} (list them with `python -m runner presets`).",
            )
        return self._resolved[preset_id]

    def default_for(self, family: str) -> Preset:
        return next(p for p in self.all() if p.family == family and p.default)

    def _resolve(self, preset_id: str, chain: tuple[str, ...]) -> Preset:
        if preset_id in self._resolved:
            return self._resolved[preset_id]
        layers = self._layers[preset_id]
        last = layers[-1].path
        if preset_id in chain:
            raise PresetsError("preset_invalid", f"{last}: 'extends' forms a cycle: {' -> '.join(chain + (preset_id,))}.",
                               "make 'extends' name a preset that does not extend this one.")
        own: dict = {}
        for raw in layers:
            own = _merge(own, raw.data)
        inherited: dict = {}
        if "extends" in own:
            parent_id = own["extends"]
            if parent_id not in self._layers:
                raise _fail(last, "extends", parent_id, f"the id of an existing preset ({', '.join(sorted(self._layers))})")
            parent = self._resolve(parent_id, chain + (preset_id,))
            inherited = self._fields_of(parent)
        family = own.get("family") or inherited.get("family") or preset_id.split("/")[0]
        if family not in FAMILY_NAMES:
            raise _fail(last, "family", family, _FIELDS["family"][1])
        merged: dict = {}
        for raw in self._bases.get(family, []):
            merged = _merge(merged, raw.data)
        merged = _merge(_merge(merged, inherited), own)
        merged["family"] = family
        merged["default"] = own.get("default", False)  # never inherited
        files = tuple(str(raw.path) for raw in self._bases.get(family, []) + layers)
        preset = _build(preset_id, merged, last, files)
        self._resolved[preset_id] = preset
        return preset

    @staticmethod
    def _fields_of(preset: Preset) -> dict:
        return {
            "family": preset.family, "source": preset.source, "dtype": preset.dtype, "steps": preset.steps,
            "cfg": preset.cfg, "sampler": preset.sampler, "width": preset.width, "height": preset.height,
            "size": {"multiple": preset.size.multiple, "min": preset.size.min, "max": preset.size.max},
            "negative_prompt": preset.negative_prompt, "prompt_style": preset.prompt_style,
            "prompt_template": preset.prompt_template, "default_negative": preset.default_negative,
            "loras_supported": preset.loras_supported, "clip_skip": preset.clip_skip,
            "loras": list(preset.loras), "call_args": dict(preset.call_args), "redux": preset.redux,
            "lineage": preset.lineage,
        }

    def _check_defaults(self) -> None:
        for family in FAMILY_NAMES:
            members = [p for p in self.all() if p.family == family]
            if not members:
                continue
            defaults = [p for p in members if p.default]
            # A user's default replaces the shipped one for that family.
            user_defaults = [p for p in defaults if p.id in self._user_ids and self._user_sets_default(p.id)]
            if user_defaults:
                defaults = user_defaults
                for preset in members:
                    if preset.default and preset not in user_defaults:
                        self._resolved[preset.id] = replace(preset, default=False)
            if len(defaults) != 1:
                names = ", ".join(p.id for p in defaults) or "none"
                raise PresetsError(
                    "preset_invalid",
                    f"family '{family}' must have exactly one default preset; found {len(defaults)}: {names}.",
                    "set `default: true` in exactly one preset of that family (a user preset's default "
                    "replaces the shipped one).",
                )

    def _user_sets_default(self, preset_id: str) -> bool:
        return bool(self._layers[preset_id][-1].data.get("default"))


def _build(preset_id: str, data: dict, path: Path, files: tuple[str, ...]) -> Preset:
    for key in _REQUIRED:
        if key not in data:
            raise PresetsError("preset_invalid", f"{path}: the preset '{preset_id}' has no '{key}'.",
                               f"add '{key}' ({_FIELDS[key][1]}) to {path.name} or to the family's {FAMILY_FILE}.")
    _check_source(path, "source", data["source"])
    if data.get("redux") is not None:
        _check_source(path, "redux", data["redux"])
    if data["dtype"] not in DTYPES:
        raise _fail(path, "dtype", data["dtype"], _FIELDS["dtype"][1])
    if not 1 <= data["steps"] <= 200:
        raise _fail(path, "steps", data["steps"], _FIELDS["steps"][1])
    if not 0 <= data["cfg"] <= 30:
        raise _fail(path, "cfg", data["cfg"], _FIELDS["cfg"][1])
    if data.get("sampler") is not None and data["sampler"] not in SAMPLERS:
        raise _fail(path, "sampler", data["sampler"], _FIELDS["sampler"][1])
    if data["prompt_style"] not in PROMPT_STYLES:
        raise _fail(path, "prompt_style", data["prompt_style"], _FIELDS["prompt_style"][1])
    if data["prompt_template"].count("{prompt}") != 1:
        raise _fail(path, "prompt_template", data["prompt_template"], _FIELDS["prompt_template"][1])
    clip_skip = data.get("clip_skip")
    if clip_skip is not None and not 1 <= clip_skip <= 12:
        raise _fail(path, "clip_skip", clip_skip, _FIELDS["clip_skip"][1])
    size = data["size"]
    if set(size) != {"multiple", "min", "max"} or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                           for v in size.values()) or size["min"] > size["max"]:
        raise _fail(path, "size", size, _FIELDS["size"][1])
    rule = SizeRule(size["multiple"], size["min"], size["max"])
    try:
        rule.check(data["family"], data["width"], data["height"])
    except PresetsError as exc:
        raise _fail(path, "width/height", (data["width"], data["height"]), exc.message) from None
    for entry in data.get("loras", []):
        if not isinstance(entry, dict) or "ref" not in entry:
            raise _fail(path, "loras", entry, _FIELDS["loras"][1])
    lineage = data.get("lineage")
    if lineage is not None and lineage not in lineage_names(data["family"]):
        allowed = lineage_names(data["family"])
        raise _fail(path, "lineage", lineage, f"null or one of {', '.join(allowed)}" if allowed else "null")
    return Preset(
        id=preset_id, family=data["family"], description=data.get("description", ""),
        license=data.get("license", ""), default=data["default"], source=dict(data["source"]),
        dtype=data["dtype"], steps=data["steps"], cfg=float(data["cfg"]), sampler=data.get("sampler"),
        width=data["width"], height=data["height"], size=rule, negative_prompt=data["negative_prompt"],
        prompt_style=data["prompt_style"], prompt_template=data["prompt_template"],
        default_negative=data.get("default_negative", ""), loras_supported=data.get("loras_supported", True),
        clip_skip=clip_skip, loras=tuple(data.get("loras", [])), call_args=dict(data.get("call_args", {})),
        redux=data.get("redux"), lineage=lineage, files=files,
    )


def _check_source(path: Path, name: str, source: dict) -> None:
    allowed = _FIELDS["source"][1]
    unknown = set(source) - _SOURCE_KEYS
    kinds = [k for k in ("repo", "folder", "tiny") if k in source]
    if unknown or len(kinds) > 1 or (not kinds and "file" not in source):
        raise _fail(path, name, source, allowed)
    if "tiny" in source and source["tiny"] is not True:
        raise _fail(path, name, source, allowed)
    if "file" in source and "config" not in source:
        raise _fail(path, name, source, "a single-file checkpoint also needs `config`: a local diffusers "
                    "folder or a Hugging Face repo id describing the pipeline")
    for key in ("repo", "revision", "file", "config", "folder"):
        if key in source and not isinstance(source[key], str):
            raise _fail(path, f"{name}.{key}", source[key], "text")


_registry: Optional[PresetRegistry] = None
_registry_stamp: Optional[tuple] = None


def _stamp(user_dir: Optional[Path]) -> tuple:
    """Modification times of every preset file, so edits are picked up without a restart."""
    stamp = []
    for root in (SHIPPED_DIR, user_dir):
        if root is not None and root.is_dir():
            stamp.extend((str(p), p.stat().st_mtime_ns) for p in sorted(root.rglob("*.yaml")))
    return (str(user_dir), tuple(stamp))


def presets_fingerprint() -> str:
    """Changes whenever a preset file is added, removed or edited (for ComfyUI's IS_CHANGED)."""
    from .host import get_host

    return str(hash(_stamp(get_host().user_presets_dir())))


def registry() -> PresetRegistry:
    """The process-wide registry, re-read when a preset file changes."""
    from .host import get_host

    global _registry, _registry_stamp
    user_dir = get_host().user_presets_dir()
    stamp = _stamp(user_dir)
    if _registry is None or stamp != _registry_stamp:
        _registry = PresetRegistry(SHIPPED_DIR, user_dir)
        _registry_stamp = stamp
    return _registry


def allow_downloads() -> bool:
    """Hub downloads happen only when the user asks for them explicitly."""
    return os.environ.get("DIFFUSERS_PRESETS_ALLOW_DOWNLOAD", "").lower() in ("1", "true", "yes")
