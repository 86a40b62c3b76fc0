"""``python -m runner sync``: rewrite a workflow's presets, model overrides and LoRA references to
what this machine has.

A reference is *absent* when its preset id does not exist or its weights are not here (and no
model override supplies them), when a model override names nothing local, or when a LoRA is not
in the local library (offline, an AIR or URL that is not downloaded counts as absent). Each
absent reference is replaced by an available one with the same name, else (``--by-family``) by
one of the same family. When any reference has no candidate nothing is written.

The output keeps the input's format: API or UI JSON, or a PNG whose ``prompt``/``workflow`` text
chunks are rewritten while every other chunk (the pixels included) is copied byte for byte.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Optional

from ..core.errors import PresetsError
from ..core.files import write_atomically
from .workflow_io import PNG_SIGNATURE, Workflow, read_workflow

PRESET_LOADER, LORA_LOADER = "PresetLoader", "CivitaiLoraLoader"
NO_LORA_CHOICE = "(use the reference below)"  # CivitaiLoraLoader's "nothing picked" combo value
# widgets_values positions (frontend order of the widget inputs; neither node has control slots).
WIDGET_INDEX = {PRESET_LOADER: {"preset": 0, "model_override": 1}, LORA_LOADER: {"lora": 0, "reference": 1}}


@dataclass(frozen=True)
class Change:
    node_id: str
    node_type: str
    input: str
    old: str
    new: str
    how: str  # "name" or "family"

    def describe(self) -> str:
        return f"node {self.node_id} ({self.node_type}) {self.input}: {self.old} → {self.new} (by {self.how})"


@dataclass
class _Site:
    """One input value of one node, in the API prompt or in the UI workflow."""

    node_id: str
    node_type: str
    values: dict  # name -> value (a copy for UI nodes)
    write: Callable[[str, str], None]


class Unresolved(PresetsError):
    """Some references have no candidate; ``errors`` holds one PresetsError each."""

    def __init__(self, errors: list[PresetsError]) -> None:
        self.errors = errors
        super().__init__(errors[0].code, "; ".join(e.message for e in errors), errors[0].fix)


# --- walking the workflow ---------------------------------------------------------------------------
def _api_sites(prompt: dict) -> Iterator[_Site]:
    for node_id, node in prompt.items():
        kind = node.get("class_type")
        inputs = node.get("inputs")
        if kind in WIDGET_INDEX and isinstance(inputs, dict):
            yield _Site(str(node_id), kind, dict(inputs), inputs.__setitem__)


def _ui_nodes(ui: dict) -> Iterator[dict]:
    yield from (n for n in ui.get("nodes", []) if isinstance(n, dict))
    definitions = ui.get("definitions") if isinstance(ui.get("definitions"), dict) else {}
    for subgraph in definitions.get("subgraphs", []) or []:
        if isinstance(subgraph, dict):
            yield from (n for n in subgraph.get("nodes", []) if isinstance(n, dict))


def _ui_sites(ui: dict) -> Iterator[_Site]:
    for node in _ui_nodes(ui):
        kind = node.get("type")
        values = node.get("widgets_values")
        if kind not in WIDGET_INDEX:
            continue
        if isinstance(values, dict):
            yield _Site(str(node.get("id")), kind, dict(values), values.__setitem__)
        elif isinstance(values, list):
            index = WIDGET_INDEX[kind]
            named = {name: values[i] for name, i in index.items() if i < len(values)}

            def write(name: str, value: str, values: list = values, index: dict = index) -> None:
                values[index[name]] = value

            yield _Site(str(node.get("id")), kind, named, write)


def _sites(workflow: Workflow) -> list[_Site]:
    sites = list(_api_sites(workflow.prompt)) if workflow.prompt is not None else []
    return sites + (list(_ui_sites(workflow.ui)) if workflow.ui is not None else [])


# --- what is available ------------------------------------------------------------------------------
def _stem(text: str) -> str:
    """The comparable name of a reference: last path segment, no revision, no suffix."""
    name = PurePosixPath(text.replace("\\", "/").split("@")[0].rstrip("/")).name
    for suffix in (".safetensors", ".sft", ".ckpt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.lower()


class Resolver:
    """Decides, for each reference, whether it is available and what replaces it. Decisions
    are cached so that a node present in both the API prompt and the UI workflow of a PNG
    changes the same way in both."""

    def __init__(self, by_name: bool = True, by_family: bool = True) -> None:
        from ..core.discovery import discover
        from ..core.presets import registry

        self.by_name = by_name
        self.by_family = by_family
        self.registry = registry()
        entries = discover()
        self.models = [e for e in entries if e.kind != "lora" and e.supported]
        self.loras = [e for e in entries if e.kind == "lora"]
        self._decided: dict[tuple, tuple[Optional[str], str]] = {}
        self._present: dict[str, bool] = {}

    # Each method returns (replacement or None if the value is fine, how) or raises PresetsError.
    def _memo(self, key: tuple, decide: Callable[[], tuple[Optional[str], str]]) -> tuple[Optional[str], str]:
        if key not in self._decided:
            self._decided[key] = decide()
        return self._decided[key]

    def _preset_present(self, preset_id: str) -> bool:
        from ..core.sources import source_present

        if preset_id not in self._present:
            self._present[preset_id] = source_present(self.registry.get(preset_id))
        return self._present[preset_id]

    def preset(self, preset_id: str, has_override: bool) -> tuple[Optional[str], str]:
        return self._memo(("preset", preset_id, has_override), lambda: self._preset(preset_id, has_override))

    def _preset(self, preset_id: str, has_override: bool) -> tuple[Optional[str], str]:
        from ..core.presets import FAMILY_NAMES

        ids = self.registry.ids()
        if preset_id in ids and (has_override or self._preset_present(preset_id)):
            return None, ""
        usable = [i for i in ids if i != preset_id and self._preset_present(i)]
        family = self.registry.get(preset_id).family if preset_id in ids else preset_id.split("/")[0]
        if self.by_name:
            named = [i for i in usable if _stem(i) == _stem(preset_id)]
            named.sort(key=lambda i: (self.registry.get(i).family != family, self.registry.get(i).is_tiny, i))
            if named:
                return named[0], "name"
        if self.by_family and family in FAMILY_NAMES:
            same = [i for i in usable if self.registry.get(i).family == family]
            # real weights before the tiny demo models, the family default first
            same.sort(key=lambda i: (self.registry.get(i).is_tiny, not self.registry.get(i).default, i))
            if same:
                return same[0], "family"
        what = "does not exist" if preset_id not in ids else "has no weights on this machine"
        raise PresetsError("preset_not_found" if preset_id not in ids else "model_not_found",
                           f"preset {preset_id!r} {what}, and no available preset {self._tried()} fits.",
                           "add the preset or its weights (see `python -m runner presets`), or allow "
                           "--by-family.")

    def _tried(self) -> str:
        ways = [w for w, on in (("of the same name", self.by_name), ("of the same family", self.by_family)) if on]
        return " or ".join(ways) or "(matching is off)"

    def override(self, preset_id: str, override: str) -> tuple[Optional[str], str]:
        return self._memo(("override", preset_id, override), lambda: self._override(preset_id, override))

    def _override(self, preset_id: str, override: str) -> tuple[Optional[str], str]:
        from ..core.sources import apply_override, source_present

        preset = self.registry.get(preset_id)
        try:
            if source_present(apply_override(preset, override)):
                return None, ""
        except PresetsError:
            pass  # not found, or a checkpoint the preset cannot use: look for another
        fits = [e for e in self.models if e.family == preset.family
                and (e.kind != "checkpoint" or "config" in preset.source)]
        fits.sort(key=lambda e: (("diffusers", "hub", "checkpoint").index(e.kind), e.name.lower()))
        if self.by_name:
            named = [e for e in fits if _stem(e.name) == _stem(override)]
            if named:
                return _override_value(named[0]), "name"
        if self.by_family and fits:
            return _override_value(fits[0]), "family"
        raise PresetsError("model_not_found",
                           f"the model override {override!r} of preset {preset_id} is not on this machine, and no "
                           f"local {preset.family} model {self._tried()} fits.",
                           "put the weights into the models folder (see `python -m runner models`), or clear "
                           "the override.")

    def lora(self, reference: str, family: Optional[str]) -> tuple[Optional[str], str]:
        return self._memo(("lora", reference, family), lambda: self._lora(reference, family))

    def _lora(self, reference: str, family: Optional[str]) -> tuple[Optional[str], str]:
        from ..core.civitai.air import parse_reference
        from ..core.discovery import lora_matches
        from ..core.presets import FAMILY_NAMES

        try:
            ref = parse_reference(reference)
        except PresetsError:
            return None, ""  # not a reference sync can judge; running the workflow reports it
        if any(lora_matches(reference, e) for e in self.loras):
            return None, ""
        if ref.kind == "local":
            from ..core.lora.library import local_candidates

            if any(c.is_file() for c in local_candidates(ref.path)):
                return None, ""
        if ref.kind == "civitai" and ref.ecosystem in FAMILY_NAMES:
            family = ref.ecosystem
        fits = [e for e in self.loras if e.supported and (family is None or e.family == family)]
        fits.sort(key=lambda e: e.name.lower())
        if self.by_name:
            if ref.kind == "civitai":
                named = [e for e in fits if e.lora is not None and e.lora.model_id == ref.model_id]
            else:
                named = [e for e in fits if _stem(e.name) == _stem(ref.path or ref.url or reference)]
            if named:
                return _lora_value(named[0], ref.kind), "name"
        if self.by_family and family is not None and fits:
            return _lora_value(fits[0], ref.kind), "family"
        raise PresetsError("lora_not_found",
                           f"the LoRA {reference!r} is not in the local library, and no local "
                           f"{family + ' ' if family else ''}LoRA {self._tried()} fits.",
                           "download it once with network access (run the workflow), put the file into the "
                           "loras folder, or remove the loader.")


def _override_value(entry: Any) -> str:
    return f"{entry.name}@{entry.revision}" if entry.kind == "hub" else entry.name


def _lora_value(entry: Any, old_kind: str) -> str:
    if old_kind == "civitai" and entry.lora is not None and entry.lora.air:
        return entry.lora.air
    return entry.name


# --- planning ---------------------------------------------------------------------------------------
def _workflow_family(sites: list[_Site], resolver: Resolver) -> Optional[str]:
    """The one family all PresetLoaders of the workflow use (LoRAs follow it), else None."""
    families = set()
    for site in sites:
        if site.node_type == PRESET_LOADER and isinstance(site.values.get("preset"), str):
            try:
                replacement, _ = resolver.preset(site.values["preset"], bool(site.values.get("model_override")))
                families.add(resolver.registry.get(replacement or site.values["preset"]).family)
            except PresetsError:
                families.add(site.values["preset"].split("/")[0])
    return families.pop() if len(families) == 1 else None


def plan(workflow: Workflow, resolver: Resolver) -> list[tuple[_Site, Change]]:
    """Every change the workflow needs; raises :class:`Unresolved` listing every reference
    without a candidate."""
    sites = _sites(workflow)
    family = _workflow_family(sites, resolver)
    planned: list[tuple[_Site, Change]] = []
    errors: list[PresetsError] = []

    def attempt(site: _Site, name: str, decide: Callable[[], tuple[Optional[str], str]]) -> Optional[str]:
        try:
            new, how = decide()
        except PresetsError as exc:
            errors.append(PresetsError(exc.code, f"node {site.node_id} ({site.node_type}) {name}: {exc.message}",
                                       exc.fix))
            return None
        if new is not None:
            planned.append((site, Change(site.node_id, site.node_type, name, site.values[name], new, how)))
        return new

    for site in sites:
        values = site.values
        if site.node_type == PRESET_LOADER and isinstance(values.get("preset"), str):
            override = values.get("model_override") if isinstance(values.get("model_override"), str) else ""
            override = override.strip()
            preset_id = attempt(site, "preset", lambda: resolver.preset(values["preset"], bool(override)))
            preset_id = preset_id or values["preset"]
            if override and preset_id in resolver.registry.ids():
                attempt(site, "model_override", lambda: resolver.override(preset_id, override))
        elif site.node_type == LORA_LOADER:
            reference = values.get("reference") if isinstance(values.get("reference"), str) else ""
            if reference.strip():
                attempt(site, "reference", lambda: resolver.lora(reference.strip(), family))
            elif _is_local_choice(values.get("lora")):
                attempt(site, "lora", lambda: resolver.lora(values["lora"], family))
    if errors:
        raise Unresolved(errors)
    return planned


def _is_local_choice(value: Any) -> bool:
    """A combo value naming a local file (not "nothing picked", not a catalog entry)."""
    return isinstance(value, str) and value != NO_LORA_CHOICE and value.lower().endswith((".safetensors", ".sft"))


# --- writing ----------------------------------------------------------------------------------------
def _png_text_chunk(key: str, text: str) -> bytes:
    """An iTXt chunk (UTF-8, uncompressed), so non-Latin-1 prompts survive."""
    body = key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")
    return struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))


def rewrite_png(data: bytes, texts: dict[str, str]) -> bytes:
    """``data`` with its text chunks named in ``texts`` replaced (written before the first
    IDAT); every other chunk is copied unchanged."""
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    written = False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        chunk = data[pos:end]
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            key = chunk[8:8 + length].split(b"\0", 1)[0].decode("latin-1", "replace")
            if key in texts:
                pos = end
                continue
        if kind in (b"IDAT", b"IEND") and not written:
            out += [_png_text_chunk(k, v) for k, v in texts.items()]
            written = True
        out.append(chunk)
        pos = end
    return b"".join(out)


def render(workflow: Workflow, original: bytes) -> bytes:
    """The workflow in its input's format."""
    if original.startswith(PNG_SIGNATURE):
        texts = {}
        if workflow.prompt is not None:
            texts["prompt"] = json.dumps(workflow.prompt)
        if workflow.ui is not None:
            texts["workflow"] = json.dumps(workflow.ui)
        return rewrite_png(original, texts)
    if workflow.prompt is not None and workflow.ui is not None:  # a /prompt request body
        body: Any = {"prompt": workflow.prompt, "extra_data": {"extra_pnginfo": {"workflow": workflow.ui}}}
    else:
        body = workflow.prompt if workflow.prompt is not None else workflow.ui
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")




def sync_workflow(source: str, output: Optional[str], by_name: bool = True, by_family: bool = True,
                  dry_run: bool = False) -> tuple[list[Change], Optional[bytes]]:
    """Plan and (unless ``dry_run``) apply the changes. Returns them (a node of a PNG's API
    prompt and UI workflow counted once) and, when ``output`` is ``-``, the bytes for stdout.
    Raises ``workflow_invalid`` for an unreadable workflow and :class:`Unresolved` (nothing
    written) when a reference has no candidate."""
    workflow = read_workflow(source)
    planned = plan(workflow, Resolver(by_name=by_name, by_family=by_family))
    changes = list(dict.fromkeys(change for _, change in planned))
    if dry_run:
        return changes, None
    for site, change in planned:
        site.write(change.input, change.new)
    data = render(workflow, Path(source).read_bytes())
    if output == "-":
        return changes, data
    if changes or output:
        target = Path(output or source)
        try:
            write_atomically(target, data)
        except OSError as exc:  # -o names a folder, or a folder that does not exist or is read-only
            raise PresetsError("input_invalid", f"cannot write the workflow to {target}: {exc.strerror or exc}.",
                               "give -o a file path in a folder you can write to.") from None
    return changes, None
