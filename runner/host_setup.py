"""Configuring the headless host: models directory, extra model paths, model overrides.

The models directory comes from ``--models-dir``, else ``MODEL_BASE_PATH``, else ComfyUI's
``folder_paths.models_dir`` when ComfyUI is importable, else ``./models``. An
``extra_model_paths.yaml`` (ComfyUI's format, contract §8) adds folders per model kind, so the
runner can use an existing ComfyUI models folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from ..core.errors import PresetsError
from ..core.host import HeadlessHost
from .workflow_io import parse_json

log = logging.getLogger(__name__)

# ComfyUI's legacy folder names.
_LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}
YAML_NAME = "extra_model_paths.yaml"


def _comfy_models_dir() -> Optional[Path]:
    if importlib.util.find_spec("folder_paths") is None:
        return None
    import folder_paths  # ComfyUI's module, importable when ComfyUI's root is on sys.path

    models_dir = getattr(folder_paths, "models_dir", None)
    return Path(models_dir) if models_dir else None


def models_root(explicit: Optional[Path]) -> Optional[Path]:
    """The models directory to use, or None for the host's default (``./models``)."""
    if explicit is not None:
        return explicit.expanduser()
    if os.environ.get("MODEL_BASE_PATH"):
        return Path(os.environ["MODEL_BASE_PATH"]).expanduser()
    return _comfy_models_dir()


def read_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """Parse an ``extra_model_paths.yaml``: ``{kind: [folders]}`` in file order;
    ``is_default: true`` sections come first."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as ex:  # RecursionError: a nesting bomb
        raise PresetsError(
            "workflow_invalid",
            f"{path}: cannot read the extra model paths file ({ex}).",
            "Fix the YAML (see ComfyUI's extra_model_paths.yaml.example) or remove it.",
        ) from None
    folders: dict[str, list[Path]] = {}
    if not isinstance(config, dict):
        return folders
    for section in config.values():
        if not isinstance(section, dict):
            continue
        base = section.get("base_path")
        base_path = Path(os.path.expandvars(os.path.expanduser(str(base)))) if base else path.parent
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        first = bool(section.get("is_default"))
        for kind, value in section.items():
            if kind in ("base_path", "is_default") or not isinstance(value, str):
                continue
            kind = _LEGACY_FOLDERS.get(kind, kind)
            paths = [base_path / line.strip() for line in value.splitlines() if line.strip()]
            current = folders.setdefault(kind, [])
            folders[kind] = paths + current if first else current + paths
    return folders


def configure_host(
    host: HeadlessHost,
    models_dir: Optional[Path] = None,
    extra_paths_files: Iterable[Path] = (),
    model_overrides: Optional[dict[str, str]] = None,
) -> None:
    """Apply the runner's options to ``host``. ``extra_model_paths.yaml`` in the current
    directory is read automatically, like ComfyUI reads the one in its root."""
    host.models_root = models_root(models_dir)
    files = list(extra_paths_files)
    default_file = Path.cwd() / YAML_NAME
    if default_file.is_file() and default_file not in files:
        files.insert(0, default_file)
    for file in files:
        if not file.is_file():
            raise PresetsError(
                "workflow_invalid", f"{file}: extra model paths file not found.", "Check the --extra-model-paths path."
            )
        for kind, paths in read_extra_model_paths(file).items():
            host.extra_folders.setdefault(kind, []).extend(paths)
        log.info("model folders from %s: %s", file, {k: [str(p) for p in v] for k, v in host.extra_folders.items()})
    host.model_overrides.update(model_overrides or {})


def parse_assignment(text: str, option: str, form: str, example: str) -> tuple[str, str]:
    """``KEY=VALUE`` → (KEY, VALUE), with a clear error naming the expected ``form``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise PresetsError("workflow_invalid", f"{option} {text!r}: expected {form}.", f"Example: {option} {example}")
    return key.strip(), value


def parse_value(text: str, option: str) -> Any:
    """The VALUE of ``option``'s ``KEY=VALUE``: JSON if it parses, else the text itself; JSON
    too deep or too large to be a value (a nesting or digit bomb) is refused (``input_invalid``)."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return text
    except (RecursionError, ValueError):
        pass  # parse_json says why
    return parse_json(text, f"{option} value {text[:40]!r}", "input_invalid", "Pass a plain number, string or small JSON value.")
