"""Loading shared by every family: ModelSource dispatch, error mapping and quiet progress bars.

Nothing here makes an implicit network call. Local folders and single files are read as they
are; hub repos are read from the local Hugging Face cache unless the source explicitly allows
downloads. Every failure becomes a :class:`PresetsError` that says where we looked and how to
get the weights there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import PresetsError, one_line
from .base import ModelSource

log = logging.getLogger(__name__)

# (name_or_path, **kwargs) -> pipeline; kwargs are dtype, local_files_only and, for
# hub repos, revision.
PretrainedLoader = Callable[..., Any]
# (checkpoint_path, config=..., dtype=..., local_files_only=True) -> pipeline
SingleFileLoader = Callable[..., Any]

TINY_MODELS_HINT = "For the offline demo models run `python -m runner tiny-models DIR`."
ALLOW_DOWNLOAD_ENV = "DIFFUSERS_PRESETS_ALLOW_DOWNLOAD"


def quiet_progress_bars() -> None:
    """Silence the per-file "Loading weights" bars of diffusers and transformers."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def quiet_step_bars(pipe: Any) -> None:
    """Hide the per-step progress bar (progress is reported through the step callback).
    A modular pipeline only forwards the setting to its top-level blocks, while the denoise
    loop sits deeper, so every nested block is set too (on ``_blocks``: the public
    ``blocks`` property returns a copy)."""
    pipe.set_progress_bar_config(disable=True)
    pending = [getattr(pipe, "_blocks", None)]
    while pending:
        block = pending.pop()
        if block is None:
            continue
        if hasattr(block, "set_progress_bar_config"):
            block.set_progress_bar_config(disable=True)
        pending.extend(getattr(block, "sub_blocks", {}).values())


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hf_download_command(repo_id: str, revision: Optional[str], filename: Optional[str] = None) -> str:
    rev = f" --revision {revision}" if revision else ""
    target = f"{repo_id} {filename}" if filename else repo_id
    return f"`hf download {target}{rev}`"


def hub_download_fix(repo_id: str, revision: Optional[str], filename: Optional[str] = None,
                     hint: str = TINY_MODELS_HINT) -> str:
    """What to do about weights missing from the local Hugging Face cache, then ``hint``."""
    return (
        f"download it with {hf_download_command(repo_id, revision, filename)}, or set {ALLOW_DOWNLOAD_ENV}=1 "
        f"to let the preset download it. {hint}"
    )


def is_hub_repo_cached(repo_id: str, revision: Optional[str], index_files: tuple[str, ...]) -> bool:
    """True when one of ``index_files`` (pipeline index files, or a single checkpoint) of
    ``repo_id@revision`` is in the local cache. Only looks at the cache on disk; never asks
    the hub. A malformed repo id is ``preset_invalid``."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    for filename in index_files:
        try:
            found = try_to_load_from_cache(repo_id, filename, revision=revision)
        except HFValidationError as exc:
            raise PresetsError(
                "preset_invalid",
                f"{repo_id!r} is not a valid Hugging Face repo id: {one_line(exc)}",
                "use `owner/name`, or a local folder path.",
            ) from exc
        if isinstance(found, str):
            return True
    return False


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (diffusers often wraps hub errors)."""
    chain: list[BaseException] = []
    current: Optional[BaseException] = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_missing_file_error(exc: BaseException) -> bool:
    """Errors that mean "these files are not here" rather than "these files are broken"."""
    from huggingface_hub import errors as hub_errors

    missing = (hub_errors.EntryNotFoundError, hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError)
    return any(isinstance(e, missing) for e in _causes(exc))


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub import errors as hub_errors

    network = (hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, ConnectionError, TimeoutError)
    return any(isinstance(e, network) for e in _causes(exc))


def _required(value: Any, family: str, kind: str, field: str) -> Any:
    if not value:
        raise PresetsError(
            "preset_invalid", f"a {family} {kind} source needs a {field}.", f"set `{field}` in the preset."
        )
    return value


def _check_folder(family: str, folder: Path, index_files: tuple[str, ...]) -> None:
    if not folder.exists():
        raise PresetsError(
            "model_not_found",
            f"the {family} model folder {folder} does not exist.",
            f"put a diffusers folder there (e.g. `hf download <repo> --local-dir {folder}`) "
            f"or point the preset at the right folder. {TINY_MODELS_HINT}",
        )
    if not folder.is_dir() or not any((folder / name).is_file() for name in index_files):
        raise PresetsError(
            "model_load_failed",
            f"{folder} is not a diffusers pipeline folder: it has no {' or '.join(index_files)}.",
            "point the preset at a diffusers folder, or use a single_file source for a checkpoint file.",
        )


def load_pipeline(
    family: str,
    source: ModelSource,
    dtype: Any,
    *,
    from_pretrained: PretrainedLoader,
    from_single_file: Optional[SingleFileLoader],
    index_files: tuple[str, ...] = ("model_index.json",),
) -> Any:
    """Load a pipeline of ``family`` from ``source``, mapping every failure to a PresetsError.

    ``from_pretrained`` loads a diffusers folder or hub repo; ``from_single_file`` loads a
    checkpoint file with a config, or is None when the family cannot do that.
    """
    kind = source.kind
    if kind == "folder":
        folder = Path(_required(source.path, family, kind, "path")).expanduser()
        _check_folder(family, folder, index_files)
        where = str(folder)
        pipe = _attempt(
            family, where, source, lambda: from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        )
    elif kind == "hub":
        _required(source.repo_id, family, kind, "repo_id")
        where = f"{source.repo_id}@{source.revision or 'main'}"
        if not source.allow_download and not is_hub_repo_cached(source.repo_id, source.revision, index_files):
            raise PresetsError(
                "model_not_found",
                f"the {family} model {where} is not in the local Hugging Face cache ({hub_cache_dir()}) "
                "and downloads are off.",
                hub_download_fix(source.repo_id, source.revision),
            )
        pipe = _attempt(
            family,
            where,
            source,
            lambda: from_pretrained(
                source.repo_id,
                revision=source.revision,
                dtype=dtype,
                local_files_only=not source.allow_download,
            ),
        )
    elif kind == "single_file":
        pipe = _load_single_file(family, source, dtype, from_single_file, index_files)
    else:
        raise PresetsError(
            "preset_invalid",
            f"unknown model source kind {kind!r} for the {family} family.",
            "use one of: hub, folder, single_file.",
        )
    quiet_step_bars(pipe)
    log.info("loaded %s pipeline from %s", family, source.describe())
    return pipe


def _load_single_file(
    family: str,
    source: ModelSource,
    dtype: Any,
    from_single_file: Optional[SingleFileLoader],
    index_files: tuple[str, ...],
) -> Any:
    if from_single_file is None:
        raise PresetsError(
            "preset_invalid",
            f"the {family} family cannot load single-file checkpoints.",
            "use a diffusers folder or a hub repo as the model source.",
        )
    path = Path(_required(source.path, family, source.kind, "path")).expanduser()
    if not path.is_file():
        raise PresetsError(
            "model_not_found",
            f"the {family} checkpoint file {path} does not exist.",
            "put the checkpoint there (e.g. in models/checkpoints) or fix the preset's path.",
        )
    config = source.config
    if config is None:
        raise PresetsError(
            "preset_invalid",
            f"the {family} single-file source {path} has no `config`; without one diffusers would go online.",
            "set `config` to a local diffusers folder or a hub repo id already in the cache.",
        )
    config_dir = Path(config).expanduser()
    if config_dir.is_dir() or config_dir.is_absolute() or config.startswith((".", "~")):
        _check_folder(family, config_dir, index_files)
        config = str(config_dir)
    elif not is_hub_repo_cached(config, None, index_files):
        raise PresetsError(
            "model_not_found",
            f"the config {config} for {path} is neither a local folder nor in the local Hugging Face cache "
            f"({hub_cache_dir()}).",
            f"download it with `hf download {config}`, or set `config` to a local diffusers folder.",
        )
    return _attempt(
        family,
        str(path),
        source,
        lambda: from_single_file(str(path), config=config, dtype=dtype, local_files_only=True),
    )


def _attempt(family: str, where: str, source: ModelSource, load: Callable[[], Any]) -> Any:
    # Sources are checked before this point without importing diffusers, so a missing
    # model is reported at once.
    quiet_progress_bars()
    try:
        return load()
    except PresetsError:
        raise
    except Exception as exc:
        if _is_missing_file_error(exc):
            fix = (
                hub_download_fix(source.repo_id, source.revision)
                if source.kind == "hub"
                else "complete the download of the model files."
            )
            raise PresetsError(
                "model_not_found",
                f"some files of the {family} model {where} are missing: {one_line(exc)}",
                fix,
            ) from exc
        if source.allow_download and _is_network_error(exc):
            raise PresetsError(
                "download_failed",
                f"downloading the {family} model {where} failed: {one_line(exc)}",
                f"check the network connection and retry, or download it yourself with "
                f"{hf_download_command(source.repo_id, source.revision)}.",
            ) from exc
        raise PresetsError(
            "model_load_failed",
            f"the {family} model at {where} could not be loaded: {one_line(exc)}",
            "check that the files are complete and belong to this family (re-download them if unsure).",
        ) from exc
