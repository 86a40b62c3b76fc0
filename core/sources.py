"""Turn a preset's ``source`` (or a user's override string) into a local :class:`ModelSource`.

Nothing here downloads: hub sources must already be in the local Hugging Face cache unless
``DIFFUSERS_PRESETS_ALLOW_DOWNLOAD=1``. Every miss is a ``model_not_found`` that says where
we looked and how to get the weights.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

from .errors import PresetsError
from .families import index_files
from .families._loading import hub_download_fix, is_hub_repo_cached
from .families.base import ModelSource
from .host import get_host
from .presets import Preset, allow_downloads

log = logging.getLogger(__name__)

TINY = "tiny"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
CHECKPOINT_SUFFIXES = (".safetensors", ".sft", ".ckpt")
# Repos Hugging Face serves only to logged-in users who accepted the license on the repo page.
GATED_REPOS = frozenset({"black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-Redux-dev"})


def tiny_models_dir() -> Path:
    return get_host().cache_dir() / "tiny-models"


def ensure_tiny_models() -> dict[str, Path]:
    """Build all the tiny random-weight models on first use and return their folders by
    family (plus ``flux_redux``)."""
    from .families import build_all_tiny

    return build_all_tiny(tiny_models_dir())


def ensure_tiny_model(name: str, preset_id: str) -> Path:
    """The folder of one tiny random-weight model (a family or ``flux_redux``) that preset
    ``preset_id`` runs on, built on first use (a few seconds) and announced, since the user
    did not ask for a build."""
    from .families import build_tiny, tiny_is_built

    folder = tiny_models_dir()
    if not tiny_is_built(folder, name):
        log.info("%s runs on the tiny random-weight %s model: building it once in %s (a few seconds)",
                 preset_id, name, folder / name)
    try:
        return build_tiny(folder, name)
    except OSError as exc:
        raise PresetsError("model_not_found", f"the tiny {name} model cannot be built in {folder}: {exc.strerror or exc}.",
                           "set DIFFUSERS_PRESETS_CACHE to a folder you can write to.") from exc


def _find_in(kind: str, relative: str) -> tuple[Optional[Path], list[Path]]:
    """Look for ``relative`` as given, then under every folder the host lists for ``kind``."""
    candidates = [Path(relative).expanduser()]
    if not candidates[0].is_absolute():
        candidates += [root / relative for root in get_host().model_folders(kind)]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve(), candidates
    return None, candidates


def _not_found(what: str, looked: list, fix: str) -> PresetsError:
    places = ", ".join(str(p) for p in looked)
    return PresetsError("model_not_found", f"{what} was not found (looked in: {places}).", fix)


def _hub_missing(what: str, repo: str, revision: Optional[str], filename: Optional[str],
                 preset_id: str) -> PresetsError:
    """``model_not_found`` for weights missing from the local cache; for a gated repo it says
    how to get access first, and how to try the workflow without the weights."""
    if repo not in GATED_REPOS:
        return _not_found(what, ["the local Hugging Face cache"], hub_download_fix(repo, revision, filename))
    return _not_found(
        f"{what} (a gated repo: Hugging Face serves it only after you accept its license)",
        ["the local Hugging Face cache"],
        f"accept the license on https://huggingface.co/{repo}, log in with `hf auth login`, then "
        + hub_download_fix(repo, revision, filename, hint=f"To try the workflow without these weights, use "
                           f"`--model {preset_id}=tiny` (in ComfyUI: PresetLoader's model_override `tiny`)."),
    )


def _hub_source(repo: str, revision: Optional[str], filename: Optional[str], config: Optional[str],
                weights_of: str, preset_id: str) -> ModelSource:
    """A hub repo (``weights_of`` names the family whose index files mark a pipeline) or one
    checkpoint file in it, from the local cache unless downloads are allowed."""
    download = allow_downloads()
    if filename is None:
        if not download and not is_hub_repo_cached(repo, revision, index_files(weights_of)):
            raise _hub_missing(f"the Hugging Face repo {repo}@{revision or 'main'}", repo, revision, None, preset_id)
        return ModelSource("hub", repo_id=repo, revision=revision, allow_download=download)
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(repo, filename, revision=revision, local_files_only=not download)
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise _hub_missing(f"{filename} from {repo}@{revision or 'main'}", repo, revision, filename,
                           preset_id) from exc
    return ModelSource("single_file", path=Path(local), config=config, revision=revision, allow_download=download)


def _config_ref(config: str) -> str:
    """A single-file config is a local diffusers folder or a hub repo id whose configs and
    tokenizers are in the local cache (the weights are not needed)."""
    found, looked = _find_in("diffusers", config)
    if found is not None:
        return str(found)
    if _REPO_ID.match(config) and (allow_downloads() or is_hub_repo_cached(config, None, ("model_index.json",))):
        return config
    raise _not_found(f"the pipeline config '{config}' for a single-file checkpoint", [*looked, "the local Hugging Face cache"],
                     f"download its configs and tokenizers once (no weights) with `hf download {config} "
                     '--exclude "*.safetensors" "*.bin" "*.onnx*"`, or set `config` to a local diffusers folder.')


def resolve_source(preset: Preset) -> ModelSource:
    """The local weights for a preset, or ``model_not_found``."""
    return resolve_weights(preset.source, preset.family, preset)


def resolve_weights(source: dict, tiny_name: str, preset: Preset) -> ModelSource:
    """Resolve one weights mapping of ``preset`` (its ``source``, or ``redux`` for Flux Redux).
    ``tiny_name`` is a family or ``flux_redux``: it picks the tiny model for ``{tiny: true}``
    and the index files that mark a complete pipeline."""
    if source.get("tiny"):
        return ModelSource("folder", path=ensure_tiny_model(tiny_name, preset.id))
    if "repo" in source:
        config = _config_ref(source["config"]) if "config" in source else None
        return _hub_source(source["repo"], source.get("revision"), source.get("file"), config, tiny_name, preset.id)
    if "folder" in source:
        found, looked = _find_in("diffusers", source["folder"])
        if found is None or not any((found / name).is_file() for name in index_files(tiny_name)):
            raise _not_found(f"the diffusers folder '{source['folder']}' of preset {preset.id}", looked,
                             "put the model's diffusers folder (with model_index.json) there, or fix the path "
                             f"in {Path(preset.files[-1]).name}.")
        return ModelSource("folder", path=found)
    found, looked = _find_in("checkpoints", source["file"])
    if found is None:
        raise _not_found(f"the checkpoint '{source['file']}' of preset {preset.id}", looked,
                         "put the file into your checkpoints folder, or fix `source.file` in the preset.")
    return ModelSource("single_file", path=found, config=_config_ref(source["config"]))


def source_present(preset: Preset) -> bool:
    """Whether the preset's weights are on this machine (tiny models always are: they are
    built on demand)."""
    if preset.is_tiny:
        return True
    try:
        if "repo" in preset.source and allow_downloads():  # resolving would not look at the cache
            repo, revision = preset.source["repo"], preset.source.get("revision")
            wanted = (preset.source["file"],) if "file" in preset.source else index_files(preset.family)
            return is_hub_repo_cached(repo, revision, wanted)
        resolve_source(preset)
    except PresetsError:
        return False
    return True


def apply_override(preset: Preset, override: str) -> Preset:
    """Point a preset at other weights while keeping its fixed parameters.

    ``tiny`` → the family's tiny model; an existing folder → a diffusers folder; an existing
    checkpoint file → single-file (with the preset's `config`); ``org/name[@rev]`` → a hub repo.
    """
    override = override.strip()
    if not override:
        return preset
    if override == TINY:
        return preset.with_tiny_source()
    folder, looked_folder = _find_in("diffusers", override)
    if folder is not None and folder.is_dir():
        return _with_source(preset, {"folder": str(folder)})
    checkpoint, looked_file = _find_in("checkpoints", override)
    if checkpoint is not None and checkpoint.is_file() and checkpoint.suffix in CHECKPOINT_SUFFIXES:
        config = preset.source.get("config")
        if config is None:
            raise PresetsError(
                "input_invalid",
                f"the model override {override} is a single-file checkpoint, but preset {preset.id} names no "
                "`config` to build the pipeline from.",
                "use a preset whose source has `config`, or convert the checkpoint to a diffusers folder.",
            )
        return _with_source(preset, {"file": str(checkpoint), "config": config})
    if _REPO_ID.match(override) and not Path(override).exists():
        repo, _, revision = override.partition("@")
        return _with_source(preset, {"repo": repo, "revision": revision or "main"})
    raise _not_found(f"the model override '{override}'", looked_folder + looked_file,
                     "give `tiny`, a diffusers folder, a checkpoint file or a Hugging Face repo id (org/name[@revision]).")


def _with_source(preset: Preset, source: dict) -> Preset:
    return replace(preset, source=source)
