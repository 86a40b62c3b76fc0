"""Process-wide pipeline cache.

Key: (weights source, revision, dtype). Policy: keep the ``capacity`` most recently used
pipelines (``DIFFUSERS_PRESETS_KEEP_PIPELINES``, default 1: real models are large) and unload
the rest; :meth:`PipelineCache.unload` empties it on request. Companion models that belong to
a pipeline (Flux Redux beside its Flux pipeline) live and die with their entry. A pipeline
whose handle asks for another VRAM profile is re-placed, not read from disk again.

Threads. The cache itself is thread-safe:

- a key is loaded once, whoever asks for it at the same time (the others wait for that load);
- capacity counts loads in flight: a load that would exceed it first evicts idle pipelines,
  and waits while the pipelines that block it are in use by other threads, so never more than
  ``capacity`` pipelines are resident (a pipeline in use is never dropped from under its user);
- nothing is loaded while the cache-wide lock is held, companions included.

A *pipeline* is not thread-safe: generating swaps its scheduler, calls ``set_adapters``,
sets Anima's guider and, when a LoRA loads, temporarily swaps diffusers' log handlers. So the
one worker model is: every generation holds its entry's lock for the whole call
(:meth:`PipelineCache.use`), and a second generation on the same pipeline waits for the first
instead of interleaving with it. Generations on different pipelines may run side by side. A
thread holds at most one pipeline at a time.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from .errors import PresetsError

if TYPE_CHECKING:
    from .handle import PipelineHandle
    from .vram import VramPlan

log = logging.getLogger(__name__)


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@dataclass
class CacheEntry:
    pipeline: Any
    plan: "VramPlan"
    load_seconds: float
    companions: dict[str, Any] = field(default_factory=dict)
    # Held by whoever generates with, re-places or adds a companion to this pipeline.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # thread ident -> how many `use` blocks that thread has open on this entry
    users: Counter = field(default_factory=Counter, repr=False)


class _PendingLoad:
    """A load in flight: other threads asking for the same key wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class PipelineCache:
    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise PresetsError("input_invalid", f"the pipeline cache must keep at least 1 pipeline, not {capacity}.",
                               "set DIFFUSERS_PRESETS_KEEP_PIPELINES to 1 or more.")
        self.capacity = capacity
        self._entries: "OrderedDict[tuple, CacheEntry]" = OrderedDict()
        self._loading: dict[tuple, _PendingLoad] = {}
        # Guards _entries, _loading, users and `loads`; notified whenever room may have appeared.
        self._changed = threading.Condition(threading.RLock())
        self.loads = 0  # how many times weights were read from disk (for tests and benchmarks)
        self.placements = 0  # how many times a loaded pipeline was re-placed for another profile

    @staticmethod
    def key(handle: "PipelineHandle") -> tuple:
        return (handle.source.cache_token(), handle.preset.dtype)

    def get(self, handle: "PipelineHandle") -> Any:
        """The pipeline, without holding it: it may be evicted once another pipeline loads."""
        return self.entry(handle).pipeline

    def entry(self, handle: "PipelineHandle") -> CacheEntry:
        return self._acquire(handle, as_user=False)

    @contextmanager
    def use(self, handle: "PipelineHandle") -> Iterator[CacheEntry]:
        """Hold ``handle``'s pipeline for one generation: it is not evicted meanwhile, and
        other generations on it wait (see the module doc)."""
        entry = self._acquire(handle, as_user=True)
        try:
            with entry.lock:
                self._place(handle, entry)
                yield entry
        finally:
            with self._changed:
                me = threading.get_ident()
                entry.users[me] -= 1
                if entry.users[me] <= 0:
                    del entry.users[me]
                self._changed.notify_all()

    def companion(self, handle: "PipelineHandle", name: str, load: Callable[[Any], Any]) -> Any:
        """A model kept beside the handle's pipeline (``load(pipeline)`` builds it once)."""
        entry = self.entry(handle)
        with entry.lock:  # only users of this pipeline wait; other keys go on
            if name not in entry.companions:
                entry.companions[name] = load(entry.pipeline)
                with self._changed:
                    self.loads += 1
            return entry.companions[name]

    # --- loading -----------------------------------------------------------------------------------
    def _acquire(self, handle: "PipelineHandle", as_user: bool) -> CacheEntry:
        key = self.key(handle)
        me = threading.get_ident()
        while True:
            with self._changed:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    if as_user:
                        entry.users[me] += 1
                    break
                pending = self._loading.get(key)
                if pending is None:
                    if not self._make_room_locked(me):
                        self._changed.wait()
                        continue
                    pending = self._loading[key] = _PendingLoad()
                    owner = True
                else:
                    owner = False
            if not owner:
                pending.done.wait()
                if pending.error is not None:
                    raise pending.error
                continue  # the entry is in place now (or was already evicted: load again)
            entry = self._load_as_owner(handle, key, pending, me if as_user else None)
            break
        if not as_user:
            self._place(handle, entry)
        return entry

    def _load_as_owner(self, handle: "PipelineHandle", key: tuple, pending: _PendingLoad,
                       user: Optional[int]) -> CacheEntry:
        try:
            entry = self._load(handle)
        except BaseException as exc:
            with self._changed:
                del self._loading[key]
                pending.error = exc
                pending.done.set()
                self._changed.notify_all()
            raise
        with self._changed:
            del self._loading[key]
            self._entries[key] = entry
            if user is not None:
                entry.users[user] += 1
            self.loads += 1
            pending.done.set()
            self._changed.notify_all()
        return entry

    def _make_room_locked(self, me: int) -> bool:
        """Evict least recently used pipelines until one more fits. An entry in use by another
        thread is never evicted: False means "wait and try again"."""
        evicted = 0
        while len(self._entries) + len(self._loading) >= self.capacity:
            victim = next((key for key, entry in self._entries.items() if not set(entry.users) - {me}), None)
            if victim is None:
                break
            if self._entries[victim].users:
                log.warning("unloading a pipeline this thread still holds to load another one")
            del self._entries[victim]
            evicted += 1
        if evicted:
            log.info("unloaded %d pipeline(s) to make room (keeping %d)", evicted, self.capacity)
            _free_memory()
        return len(self._entries) + len(self._loading) < self.capacity

    def _load(self, handle: "PipelineHandle") -> CacheEntry:
        from .families import get_family
        from .vram import apply_vram_plan

        family = get_family(handle.family_name)
        started = time.perf_counter()
        log.info("loading %s (%s, %s) from %s", handle.preset.id, family.pipeline_class, handle.preset.dtype,
                 handle.source.describe())
        pipeline = family.load(handle.source, torch_dtype(handle.preset.dtype))
        plan = apply_vram_plan(pipeline, handle.vram_profile)
        seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s", handle.preset.id, seconds)
        return CacheEntry(pipeline, plan, seconds)

    def _place(self, handle: "PipelineHandle", entry: CacheEntry) -> None:
        """Re-place a loaded pipeline whose handle asks for another VRAM profile (no disk read)."""
        if entry.plan.requested == handle.vram_profile:
            return
        from .vram import replace_vram_plan

        with entry.lock:
            if entry.plan.requested != handle.vram_profile:
                entry.plan = replace_vram_plan(entry.pipeline, handle.vram_profile)
                with self._changed:
                    self.placements += 1

    def unload(self, handle: Optional["PipelineHandle"] = None) -> int:
        """Drop one handle's pipeline, or every pipeline when ``handle`` is None. A generation
        running on a dropped pipeline finishes; its memory is freed after it."""
        with self._changed:
            if handle is None:
                count = len(self._entries)
                self._entries.clear()
            else:
                count = int(self._entries.pop(self.key(handle), None) is not None)
            self._changed.notify_all()
        if count:
            _free_memory()
        return count

    def __len__(self) -> int:
        with self._changed:
            return len(self._entries)


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_cache: Optional[PipelineCache] = None
_cache_lock = threading.Lock()


def pipeline_cache() -> PipelineCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            raw = os.environ.get("DIFFUSERS_PRESETS_KEEP_PIPELINES", "1")
            try:
                capacity = int(raw)
            except ValueError:
                raise PresetsError("input_invalid", f"DIFFUSERS_PRESETS_KEEP_PIPELINES={raw!r} is not a number.",
                                   "set it to how many pipelines to keep loaded, e.g. 1.") from None
            _cache = PipelineCache(capacity)
        return _cache


def loaded_count() -> int:
    """How many pipelines are loaded, without creating the cache (which reads the environment)."""
    with _cache_lock:
        return len(_cache) if _cache is not None else 0
