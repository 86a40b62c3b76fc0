"""Model configurations: presets seen as the configurations of a model or of a base type.

A configuration *is* a preset. Its fields map onto the preset YAML schema (core/presets.py):

======================  ============================================================================
configuration field     preset
======================  ============================================================================
``id``                  the preset id, ``<folder>/<name>`` (the file ``<folder>/<name>.yaml``)
``model_id``            ``source`` as text: ``tiny``, ``org/name[@revision]`` (a hub repo),
                        ``org/name/file.safetensors[@revision]`` (a checkpoint in a repo), a diffusers
                        folder or a checkpoint file. ``null``: a base-type configuration, whose file
                        has no ``source`` and ``extends`` the family's shipped default
``base_model``          ``family`` and ``lineage``: a family id (``sdxl``) or a lineage alias
                        (``pony``, ``illustrious``, ``flux_dev``, ...; ``-`` and ``_`` are the same)
``description``         ``description``
``is_default``          base-type configurations: ``default`` (one per family: pony and illustrious
                        are both the sdxl base type). Model configurations: one default per
                        ``model_id``, kept in the index (not a preset field)
``steps``               ``steps`` (1 to 200)
``cfg_scale``           ``cfg`` (0 to 30)
``sampler``             ``sampler``: null or a sampler the family accepts (:func:`family_samplers`;
                        sdxl: euler_a, euler, dpmpp_2m, ddim; flow-matching families: euler)
``scheduler``           none: diffusers' sampler is the scheduler; only null is accepted
``clip_skip``           ``clip_skip``
``resolution_width``    ``width`` (the family's size rule applies)
``resolution_height``   ``height``
``additional_params``   ``call_args`` (extra keyword arguments of the pipeline call)
``name``, ``batch_size``,  not preset fields (the sampler node's inputs decide batch and seed):
``seed``, ``created_at``,  kept in the index ``configurations.json`` beside the user presets
``updated_at``
======================  ============================================================================

Shipped presets are read-only: a change writes the user's file with the same id (the override
layer of core/presets.py) holding only the changed fields, and removing that file restores the
shipped preset. Every write happens under one file lock for the user presets folder, each file
is replaced atomically, and the whole folder is validated by core/presets.py (the same rules
and messages as for any preset file) before anything is replaced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .errors import PresetsError
from .files import write_atomically
from .host import get_host
from .lora.compat import PRESET_LINEAGES
from .presets import FAMILY_NAMES, SHIPPED_DIR, Preset, PresetRegistry

log = logging.getLogger(__name__)

INDEX_NAME = "configurations.json"
LOCK_WAIT_S = 60
LOCK_NAME = ".configurations.lock"
FIELDS = ("id", "model_id", "base_model", "name", "description", "is_default", "steps", "cfg_scale", "sampler",
          "scheduler", "clip_skip", "resolution_width", "resolution_height", "batch_size", "seed",
          "additional_params", "created_at", "updated_at")
_WRITABLE = set(FIELDS) - {"id", "created_at", "updated_at"}
# configuration field -> preset field (the one-to-one part of the mapping)
_PRESET_FIELD = {"description": "description", "steps": "steps", "cfg_scale": "cfg", "sampler": "sampler",
                 "clip_skip": "clip_skip", "resolution_width": "width", "resolution_height": "height",
                 "additional_params": "call_args"}
_CONFIG_FIELD = {preset: config for config, preset in _PRESET_FIELD.items()}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT = (".safetensors", ".sft", ".ckpt")
_thread_lock = threading.Lock()  # filelock serialises processes; this, threads of one process


def _invalid(field: str, value: Any, allowed: str) -> PresetsError:
    error = PresetsError("preset_invalid", f"field '{field}' has the value {value!r}; allowed: {allowed}.",
                         f"send '{field}' as {allowed}.")
    error.field = field  # type: ignore[attr-defined]  # the HTTP layer names it in a 400
    return error


def error_field(error: PresetsError) -> Optional[str]:
    """The configuration field a validation error is about, when one can be named."""
    if getattr(error, "field", None):
        return error.field  # type: ignore[attr-defined]
    match = re.search(r"field '([\w./]+)'", error.message)
    if not match:
        return None
    name = match.group(1)
    if name in ("width/height",):
        return "resolution_width"
    if name.startswith("source"):
        return "model_id"
    if name in ("family", "lineage"):
        return "base_model"
    return _CONFIG_FIELD.get(name, name)


# --- base model aliases ---------------------------------------------------------------------------------
def parse_base_model(text: Any) -> tuple[str, Optional[str]]:
    """``sdxl`` -> (sdxl, None); ``pony`` -> (sdxl, pony); ``flux_dev`` -> (flux, flux-dev)."""
    if isinstance(text, str):
        key = text.strip().lower().replace("_", "-")
        if key in FAMILY_NAMES:
            return key, None
        if key in PRESET_LINEAGES:
            return PRESET_LINEAGES[key][0], key
    names = list(FAMILY_NAMES) + [name.replace("-", "_") for name in PRESET_LINEAGES]
    raise _invalid("base_model", text, f"one of {', '.join(names)}")


def base_model_of(preset: Preset) -> str:
    lineage = getattr(preset, "lineage", None)
    return lineage.replace("-", "_") if lineage else preset.family


def family_samplers(family: str) -> tuple[str, ...]:
    """The sampler names a family accepts (null, the pipeline's own scheduler, always is)."""
    from .families import get_family

    return tuple(sorted(getattr(get_family(family), "samplers", {}) or {}))


# --- model ids ------------------------------------------------------------------------------------------
def model_id_of(source: dict) -> str:
    if source.get("tiny"):
        return "tiny"
    if "repo" in source:
        text = source["repo"] + (f"/{source['file']}" if "file" in source else "")
        revision = source.get("revision")
        return text + (f"@{revision}" if revision and revision != "main" else "")
    return str(source.get("folder") or source.get("file"))


def source_of(model_id: Any, config: Optional[str]) -> dict:
    """The preset ``source`` for a model id (the inverse of :func:`model_id_of`). ``config``
    is the pipeline config a single-file checkpoint needs (the family default's)."""
    if not isinstance(model_id, str) or not model_id.strip() or "\n" in model_id:
        raise _invalid("model_id", model_id, "null, tiny, a hub repo id, a diffusers folder or a checkpoint file")
    text = model_id.strip()
    if text == "tiny":
        return {"tiny": True}
    base, _, revision = text.partition("@")
    local = Path(base).expanduser().is_absolute() or base.startswith(".")
    if base.lower().endswith(_CHECKPOINT):
        parts = base.split("/")
        if not local and len(parts) >= 3 and _REPO.match("/".join(parts[:2])):
            source = {"repo": "/".join(parts[:2]), "revision": revision or "main", "file": "/".join(parts[2:])}
        else:
            source = {"file": text}
        if config is None:
            raise _invalid("model_id", model_id, "a diffusers folder or hub repo for this family (it has no "
                                                 "pipeline config for single-file checkpoints)")
        return {**source, "config": config}
    if not local and _REPO.match(base) and not any((root / base).is_dir() for root in
                                                   get_host().model_folders("diffusers")):
        return {"repo": base, "revision": revision or "main"}
    return {"folder": text}


# --- the store ------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _dump_yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically. The new mtime is made to differ from the old one
    (coarse filesystem clocks), so ``registry()`` notices every change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else 0
    write_atomically(path, text, durable=True)
    if path.stat().st_mtime_ns <= old:
        os.utime(path, ns=(old + 1, old + 1))


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    # the stamp of core.presets lists the files: a removal changes it too


class Store:
    """The configurations of one user presets folder, over the shipped presets."""

    def __init__(self, folder: Optional[Path] = None) -> None:
        # None: the host's folder; without one (headless, no PRESETS_DIR) reads see the shipped
        # presets and writes fail with preset_read_only.
        self._folder = folder if folder is not None else get_host().user_presets_dir()

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise PresetsError("preset_read_only", "there is no user presets folder to write configurations to.",
                               "set PRESETS_DIR to a folder (inside ComfyUI it is models/diffusers_presets).")
        return self._folder

    # -- locking and the index -------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / LOCK_NAME), timeout=LOCK_WAIT_S)
        with _thread_lock:
            try:
                lock.acquire()
            except Timeout:
                raise PresetsError("preset_read_only", f"another process has held {self.folder / LOCK_NAME} for "
                                   f"{LOCK_WAIT_S} s; the configuration was not written.",
                                   "try again; if it persists, stop the process that holds it (or delete the lock "
                                   "file when none runs).") from None
            try:
                yield
            finally:
                lock.release()

    def _index(self) -> dict:
        data: dict = {}
        if self._folder is not None:
            try:
                data = json.loads((self._folder / INDEX_NAME).read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"a JSON {type(data).__name__}, not an object")
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                raise PresetsError("preset_invalid", f"{self._folder / INDEX_NAME} is not readable JSON ({exc}).",
                                   "fix or remove the file (it holds configuration names, seeds and model defaults).")
        data.setdefault("configurations", {})
        data.setdefault("model_defaults", {})
        return data

    def _registry(self) -> PresetRegistry:
        return PresetRegistry(SHIPPED_DIR, self._folder)

    # -- reading ---------------------------------------------------------------------------------------
    def _user_file(self, config_id: str) -> Path:
        return self.folder / f"{config_id}.yaml"

    def _has_user_file(self, config_id: str) -> bool:
        return self._folder is not None and self._user_file(config_id).is_file()

    def _own(self, config_id: str) -> dict:
        """The user's YAML for ``config_id`` ({} when there is none)."""
        import yaml

        if not self._has_user_file(config_id):
            return {}
        return yaml.safe_load(self._user_file(config_id).read_text(encoding="utf-8")) or {}

    def _shipped_ids(self) -> set[str]:
        return set(PresetRegistry(SHIPPED_DIR).ids())

    def to_config(self, preset: Preset, index: dict, shipped: set[str]) -> dict[str, Any]:
        meta = index["configurations"].get(preset.id, {})
        is_base = bool(meta.get("base"))
        model_id = None if is_base else model_id_of(preset.source)
        is_default = preset.default if is_base or model_id is None else (
            index["model_defaults"].get(model_id) == preset.id)
        if not is_base and preset.default and model_id not in index["model_defaults"]:
            is_default = True  # a family default is its model's default until another is chosen
        return {
            "id": preset.id, "model_id": model_id, "base_model": base_model_of(preset),
            "name": meta.get("name", preset.id.split("/")[-1]), "description": preset.description,
            "is_default": is_default, "steps": preset.steps, "cfg_scale": preset.cfg, "sampler": preset.sampler,
            "scheduler": None, "clip_skip": preset.clip_skip, "resolution_width": preset.width,
            "resolution_height": preset.height, "batch_size": meta.get("batch_size", 1), "seed": meta.get("seed", -1),
            "additional_params": dict(preset.call_args), "created_at": meta.get("created_at"),
            "updated_at": meta.get("updated_at"), "shipped": preset.id in shipped,
            "overridden": preset.id in shipped and self._has_user_file(preset.id),
        }

    def all(self) -> list[dict[str, Any]]:
        index, shipped = self._index(), self._shipped_ids()
        return [self.to_config(p, index, shipped) for p in self._registry().all()]

    def get(self, config_id: str) -> dict[str, Any]:
        config_id = check_id(config_id)
        preset = self._registry().get(config_id)
        return self.to_config(preset, self._index(), self._shipped_ids())

    def for_model(self, model_id: str) -> list[dict[str, Any]]:
        return [c for c in self.all() if c["model_id"] == model_id]

    def for_base(self, base_model: str) -> list[dict[str, Any]]:
        """Base-type configurations (no model) of a family, or of one lineage for an alias."""
        family, lineage = parse_base_model(base_model)
        wanted = lineage.replace("-", "_") if lineage else None
        return [c for c in self.all() if c["model_id"] is None and parse_base_model(c["base_model"])[0] == family
                and (wanted is None or c["base_model"] == wanted)]

    def default_for(self, model_id: Optional[str], base_model: Optional[str] = None) -> dict[str, Any]:
        """The configuration to use: the model's default, else its base type's default."""
        configs = self.all()
        if model_id is not None:
            chosen = self._index()["model_defaults"].get(model_id)
            hit = next((c for c in configs if c["id"] == chosen), None)
            if hit is not None:
                return hit
            hit = next((c for c in configs if c["model_id"] == model_id and c["is_default"]), None)
            if hit is not None:
                return hit
            if base_model is None:
                base_model = next((c["base_model"] for c in configs if c["model_id"] == model_id), None)
        if base_model is None:
            raise PresetsError("preset_not_found", f"there is no configuration for the model {model_id!r}.",
                               "give its base_model, or create a configuration for it.")
        family, _ = parse_base_model(base_model)
        default = self._registry().default_for(family)
        return self.get(default.id)

    # -- writing ---------------------------------------------------------------------------------------
    def create(self, body: dict, model_id: Any = ..., base: bool = False) -> dict[str, Any]:
        """A new configuration. ``model_id`` from the route wins over the body's; ``base``:
        a base-type configuration (no model)."""
        body = _check_body(body)
        if model_id is not ...:
            body["model_id"] = model_id
        if base:
            body["model_id"] = None
        if "base_model" not in body:
            raise _invalid("base_model", None, "a family id or a lineage alias (it is required)")
        family, lineage = parse_base_model(body["base_model"])
        config_id = check_id(body.get("id") or f"{family}/{_slug(body.get('name') or 'configuration')}")
        with self._locked():
            if config_id in self._registry().ids():
                error = _invalid("id", config_id, "an id no configuration (preset) has yet")
                error.conflict = True  # type: ignore[attr-defined]  # HTTP 409
                raise error
            parent = PresetRegistry(SHIPPED_DIR).default_for(family)
            data: dict[str, Any] = {"family": family, "extends": parent.id}
            if lineage:
                data["lineage"] = lineage
            self._apply(data, body, family, parent)
            meta = {"base": body.get("model_id") is None, "created_at": _now()}
            return self._commit(config_id, data, body, meta)

    def update(self, config_id: str, body: dict) -> dict[str, Any]:
        """Change fields of a configuration; on a shipped preset, writes the user override."""
        config_id = check_id(config_id)
        body = _check_body(body)
        if body.get("id", config_id) != config_id:
            raise _invalid("id", body["id"], f"{config_id!r}, the id in the request (an id never changes)")
        with self._locked():
            current = self._registry().get(config_id)
            data = self._own(config_id)
            family, lineage = current.family, None
            if "base_model" in body:
                family, lineage = parse_base_model(body["base_model"])
                data["family"] = family
                data.pop("lineage", None)
                if lineage:
                    data["lineage"] = lineage
                if family != current.family and "extends" in data:
                    # inherit from the new family, not the old one's size rule and prompt style
                    data["extends"] = PresetRegistry(SHIPPED_DIR).default_for(family).id
            index = self._index()
            meta = dict(index["configurations"].get(config_id, {}))
            if "model_id" in body and body["model_id"] is None and not meta.get("base"):
                data.pop("source", None)
                data.setdefault("extends", PresetRegistry(SHIPPED_DIR).default_for(family).id)
                meta["base"] = True
            elif body.get("model_id") is not None:
                meta["base"] = False
            self._apply(data, body, family, PresetRegistry(SHIPPED_DIR).default_for(family), current)
            return self._commit(config_id, data, body, meta)

    def delete(self, config_id: str) -> Optional[dict[str, Any]]:
        """Remove a user configuration, or the user's override of a shipped one (which returns
        the shipped preset, also returned here)."""
        config_id = check_id(config_id)
        with self._locked():
            path = self._user_file(config_id)
            if not path.is_file():
                if config_id in self._shipped_ids():
                    raise PresetsError("preset_read_only", f"'{config_id}' is a shipped preset; it cannot be deleted.",
                                       "only your override of it can be deleted (then the shipped one returns).")
                self._registry().get(config_id)  # preset_not_found with the list of ids
            index = self._index()
            index["configurations"].pop(config_id, None)
            index["model_defaults"] = {m: c for m, c in index["model_defaults"].items() if c != config_id}
            self._validate({config_id: None})
            _remove(path)
            self._write_index(index)
            return self.get(config_id) if config_id in self._shipped_ids() else None

    def set_default(self, config_id: str) -> dict[str, Any]:
        return self.update(config_id, {"is_default": True})

    # -- internals -------------------------------------------------------------------------------------
    def _apply(self, data: dict, body: dict, family: str, parent: Preset, current: Optional[Preset] = None) -> None:
        """Write the body's preset fields into ``data`` (a user YAML mapping)."""
        for field, preset_field in _PRESET_FIELD.items():
            if field in body:
                data[preset_field] = body[field]
        if "sampler" in body and body["sampler"] is not None:
            allowed = family_samplers(family)
            if body["sampler"] not in allowed:
                raise _invalid("sampler", body["sampler"], f"null (the pipeline's scheduler) or, for the {family} "
                                                           f"family, one of {', '.join(allowed)}")
        if body.get("model_id") is not None:
            if current is None or body["model_id"] != model_id_of(current.source):
                data["source"] = source_of(body["model_id"], parent.source.get("config"))
        if body.get("scheduler") is not None:
            raise _invalid("scheduler", body["scheduler"], "null: diffusers presets choose the scheduler through "
                                                           "`sampler`")

    def _commit(self, config_id: str, data: dict, body: dict, meta: dict) -> dict[str, Any]:
        index = self._index()
        for key in ("name", "batch_size", "seed"):
            if key in body:
                meta[key] = body[key]
        meta["updated_at"] = _now()
        meta.setdefault("created_at", meta["updated_at"])
        index["configurations"][config_id] = meta
        changed: dict[str, Optional[dict]] = {config_id: data}
        if "is_default" in body:
            self._move_default(config_id, data, bool(body["is_default"]), meta, index, changed)
        self._validate(changed)
        for other_id, other in changed.items():
            if other is not None:
                _replace(self._user_file(other_id), _dump_yaml(other))
        self._write_index(index)
        return self.get(config_id)

    def _move_default(self, config_id: str, data: dict, on: bool, meta: dict, index: dict,
                      changed: dict[str, Optional[dict]]) -> None:
        if not meta.get("base"):
            model_id = model_id_of(self._source_after(config_id, data))
            if on:
                index["model_defaults"][model_id] = config_id
            elif index["model_defaults"].get(model_id) == config_id:
                del index["model_defaults"][model_id]
            return
        data["default"] = on
        if not on:
            return
        family = data.get("family") or self._registry().get(config_id).family
        for preset in self._registry().all():
            own = self._own(preset.id)
            if preset.id != config_id and preset.family == family and own.get("default"):
                changed[preset.id] = {**own, "default": False}

    def _source_after(self, config_id: str, data: dict) -> dict:
        if "source" in data:
            return data["source"]
        return self._registry().get(config_id).source

    def _validate(self, changed: dict[str, Optional[dict]]) -> None:
        """Build the registry over a copy of the user folder with the changes applied: the same
        validation as any preset file. Messages name the real folder, not the copy."""
        with tempfile.TemporaryDirectory(prefix="dp-validate-") as tmp:
            copy = Path(tmp) / "presets"
            shutil.copytree(self.folder, copy, ignore=shutil.ignore_patterns(".*", INDEX_NAME))
            for config_id, data in changed.items():
                target = copy / f"{config_id}.yaml"
                if data is None:
                    target.unlink(missing_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(_dump_yaml(data), encoding="utf-8")
            try:
                PresetRegistry(SHIPPED_DIR, copy)
            except PresetsError as exc:
                error = PresetsError(exc.code, exc.message.replace(str(copy), str(self.folder)),
                                     exc.fix.replace(str(copy), str(self.folder)))
                field = error_field(error)
                error.field = field  # type: ignore[attr-defined]
                raise error from None

    def _write_index(self, index: dict) -> None:
        _replace(self.folder / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True))


def check_id(config_id: Any) -> str:
    """A configuration id is a preset id, ``<folder>/<name>``: no ``..``, no absolute path."""
    if not isinstance(config_id, str) or not _ID.match(config_id) or ".." in config_id:
        raise _invalid("id", config_id, "<folder>/<name>: lowercase letters, digits, - and _ for the folder; "
                                        "letters, digits, -, _ and . for the name (no '..', not absolute)")
    return config_id


def _slug(name: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")
    return text[:80] or "configuration"


def _check_body(body: Any) -> dict:
    """Types of the fields that are not preset fields (those are checked by core.presets)."""
    from .sampler import MAX_BATCH, MAX_SEED

    if not isinstance(body, dict):
        raise _invalid("<body>", type(body).__name__, "a JSON object of configuration fields")
    unknown = set(body) - set(FIELDS) - {"shipped", "overridden"}
    if unknown:
        name = sorted(unknown)[0]
        raise _invalid(name, body[name], f"a field among {', '.join(FIELDS)}")
    body = {k: v for k, v in body.items() if k in _WRITABLE or k == "id"}
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "name": (lambda v: isinstance(v, str) and 0 < len(v) <= 200, "text of 1 to 200 characters"),
        "is_default": (lambda v: isinstance(v, bool), "true or false"),
        "batch_size": (lambda v: _is_int(v) and 1 <= v <= MAX_BATCH, f"an integer from 1 to {MAX_BATCH}"),
        "seed": (lambda v: _is_int(v) and -1 <= v <= MAX_SEED, f"-1 (random) or an integer from 0 to {MAX_SEED}"),
        "additional_params": (lambda v: isinstance(v, dict), "an object of extra pipeline arguments"),
        "description": (lambda v: isinstance(v, str), "text"),
    }
    for field, (ok, allowed) in checks.items():
        if field in body and not ok(body[field]):
            raise _invalid(field, body[field], allowed)
    # Preset fields keep their YAML types; a JSON number that is too big for the checks of
    # core.presets is still an int, so range errors come from there.
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def store() -> Store:
    """The store of the current host's user presets folder."""
    return Store()


__all__ = ["FIELDS", "Store", "base_model_of", "check_id", "error_field", "family_samplers", "model_id_of",
           "parse_base_model", "source_of", "store"]
