"""Host facilities: where files live, progress reporting and interrupts.

The core never asks ComfyUI directly. It calls :func:`get_host`, which returns whatever host
was installed with :func:`set_host`: the ComfyUI host (``nodes/comfy_host.py``, installed when
the pack is loaded inside ComfyUI) or the headless host below, which the runner configures.

Progress and interruption belong to a *run*, not to the process: the runner's engine enters a
:class:`RunContext` (:func:`run_scope`) on the thread that executes a prompt, and the headless
host reports progress to, and checks the interrupt flag of, the run of the calling thread. Two
runs on two threads (a ComfyUI prompt and an OpenAI request, say) never see each other's
events or interrupts.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

from .errors import Interrupted

log = logging.getLogger(__name__)

# (value, total) -> None; installed by the runner engine to forward per-step progress.
ProgressListener = Callable[[int, int], None]
# (latent (C, H, W) of the first image, family name) -> None; live previews of a run.
PreviewListener = Callable[[Any, str], None]


class Progress(Protocol):
    """Step progress of one node. A host's progress may also have ``preview(latent, family)``
    to show step previews (ComfyUI's does)."""

    def update_absolute(self, value: int, total: Optional[int] = None) -> None: ...


class Host(Protocol):
    name: str
    model_overrides: dict[str, str]  # preset id -> model source override (the runner's --model)

    def model_folders(self, kind: str) -> list[Path]:
        """Folders to search for a model kind: ``diffusers``, ``checkpoints``, ``loras``,
        ``clip_vision``, ``style_models``. The first one is where downloads go."""
        ...

    def models_dir(self) -> Path: ...

    def model_files(self, kind: str) -> list[str]:
        """Relative ``/``-separated paths of the files in every folder of ``kind``."""
        ...

    def user_presets_dir(self) -> Optional[Path]: ...

    def cache_dir(self) -> Path:
        """Where generated artefacts (the demo's tiny models) are kept."""
        ...

    def progress(self, total: int) -> Progress: ...

    def throw_if_interrupted(self) -> None: ...


def _env_path(name: str) -> Optional[Path]:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


class RunContext:
    """One run's progress listener, preview listener and interrupt flag.
    ``request_interrupt`` is thread-safe."""

    def __init__(self, progress_listener: Optional[ProgressListener] = None,
                 preview_listener: Optional[PreviewListener] = None) -> None:
        self.progress_listener = progress_listener
        self.preview_listener = preview_listener
        self._interrupt = threading.Event()

    def request_interrupt(self) -> None:
        self._interrupt.set()

    def throw_if_interrupted(self) -> None:
        if self._interrupt.is_set():
            raise Interrupted()


_current_run: contextvars.ContextVar[Optional[RunContext]] = contextvars.ContextVar("diffusers_presets_run",
                                                                                    default=None)


def current_run() -> Optional[RunContext]:
    """The run the calling thread (or task) executes, if any."""
    return _current_run.get()


@contextmanager
def run_scope(context: RunContext) -> Iterator[RunContext]:
    """Make ``context`` the current run for the code inside the ``with`` block."""
    token = _current_run.set(context)
    try:
        yield context
    finally:
        _current_run.reset(token)


_MTIME_TICK_NS = 100_000_000  # generous: ext4 and NTFS stamp files to a few ms at worst


def _mtime(path: str) -> int:
    """A folder's mtime in ns; -1 when it does not exist (so its creation is a change)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


class _RunProgress:
    """Progress of one run: bound to the run current when it was created."""

    def __init__(self, run: Optional[RunContext], total: int) -> None:
        self._run = run
        self.total = total

    def update_absolute(self, value: int, total: Optional[int] = None) -> None:
        if total is not None:
            self.total = total
        if self._run is None:
            return
        self._run.throw_if_interrupted()
        if self._run.progress_listener is not None:
            self._run.progress_listener(value, self.total)


class HeadlessHost:
    """Host used outside ComfyUI. Paths come from the environment (``MODEL_BASE_PATH``,
    ``PRESETS_DIR``, ``DIFFUSERS_PRESETS_CACHE``) unless the runner sets them explicitly."""

    name = "headless"

    def __init__(self) -> None:
        self.models_root: Optional[Path] = None
        self.extra_folders: dict[str, list[Path]] = {}
        # preset id -> model source override ("tiny", a folder, a file), from `--model`.
        self.model_overrides: dict[str, str] = {}
        # kind -> (folders, {walked dir: mtime}, files): see model_files
        self._listings: dict[str, tuple[list[Path], dict[str, int], list[str]]] = {}

    def models_dir(self) -> Path:
        return self.models_root or _env_path("MODEL_BASE_PATH") or Path.cwd() / "models"

    def model_folders(self, kind: str) -> list[Path]:
        return [self.models_dir() / kind, *self.extra_folders.get(kind, [])]

    def model_files(self, kind: str) -> list[str]:
        # Node lists (INPUT_TYPES) ask on every validation: like ComfyUI's folder_paths, reuse
        # the last walk while no folder in it changed (a new file changes its folder's mtime).
        folders = self.model_folders(kind)
        cached = self._listings.get(kind)
        if cached is not None and cached[0] == folders and all(_mtime(d) == m for d, m in cached[1].items()):
            return cached[2]
        started = time.time_ns()
        names: set[str] = set()
        seen: dict[str, int] = {}
        for folder in folders:
            seen[str(folder)] = _mtime(str(folder))
            for current, _dirs, files in os.walk(folder):
                seen[current] = _mtime(current)
                names.update((Path(current, name).relative_to(folder)).as_posix() for name in files)
        listing = sorted(names)
        # Filesystem clocks are coarse: a folder changed just before the walk could change again
        # within the same tick, unseen. Such a walk is not reused.
        if max(seen.values(), default=-1) < started - _MTIME_TICK_NS:
            self._listings[kind] = (folders, seen, listing)
        else:
            self._listings.pop(kind, None)
        return listing

    def user_presets_dir(self) -> Optional[Path]:
        return _env_path("PRESETS_DIR")

    def cache_dir(self) -> Path:
        explicit = _env_path("DIFFUSERS_PRESETS_CACHE")
        if explicit:
            return explicit
        xdg = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
        return xdg / "diffusers-presets"

    def progress(self, total: int) -> Progress:
        return _RunProgress(current_run(), total)

    def throw_if_interrupted(self) -> None:
        run = current_run()
        if run is not None:
            run.throw_if_interrupted()


_host: Optional[Host] = None


def set_host(host: Host) -> None:
    global _host
    _host = host
    log.debug("host set to %s", host.name)


def get_host() -> Host:
    global _host
    if _host is None:
        _host = HeadlessHost()
    return _host
