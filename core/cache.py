"""Process-wide pipeline cache.

Key: (weights source, revision, dtype, VRAM profile). Policy: keep the ``capacity`` most
recently used pipelines (``DIFFUSERS_PRESETS_KEEP_PIPELINES``, default 1: real models are
large) and unload the rest; :meth:`PipelineCache.unload` empties it on request. Companion
models that belong to a pipeline (Flux Redux beside its Flux pipeline) live and die with
their entry. The same key is loaded once even when two threads ask at the same time.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

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


class PipelineCache:
    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise PresetsError("input_invalid", f"the pipeline cache must keep at least 1 pipeline, not {capacity}.",
                               "set DIFFUSERS_PRESETS_KEEP_PIPELINES to 1 or more.")
        self.capacity = capacity
        self._entries: "OrderedDict[tuple, CacheEntry]" = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self.loads = 0  # how many times weights were read from disk (for tests and benchmarks)

    @staticmethod
    def key(handle: "PipelineHandle") -> tuple:
        return (handle.source.cache_token(), handle.preset.dtype, handle.vram_profile)

    def get(self, handle: "PipelineHandle") -> Any:
        return self.entry(handle).pipeline

    def entry(self, handle: "PipelineHandle") -> CacheEntry:
        key = self.key(handle)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second caller for the same key waits here, then finds the entry
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            self._make_room()
            entry = self._load(handle)
            with self._lock:
                self._entries[key] = entry
            return entry

    def companion(self, handle: "PipelineHandle", name: str, load: Callable[[Any], Any]) -> Any:
        """A model kept beside the handle's pipeline (``load(pipeline)`` builds it once)."""
        entry = self.entry(handle)
        with self._lock:
            if name not in entry.companions:
                entry.companions[name] = load(entry.pipeline)
                self.loads += 1
            return entry.companions[name]

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
        self.loads += 1
        log.info("loaded %s in %.2f s", handle.preset.id, seconds)
        return CacheEntry(pipeline, plan, seconds)

    def _make_room(self) -> None:
        with self._lock:
            evicted = []
            while len(self._entries) >= self.capacity:
                key, _entry = self._entries.popitem(last=False)
                evicted.append(key)
        if evicted:
            log.info("unloaded %d pipeline(s) to make room (keeping %d)", len(evicted), self.capacity)
            _free_memory()

    def unload(self, handle: Optional["PipelineHandle"] = None) -> int:
        """Drop one handle's pipeline, or every pipeline when ``handle`` is None."""
        with self._lock:
            if handle is None:
                count = len(self._entries)
                self._entries.clear()
            else:
                count = int(self._entries.pop(self.key(handle), None) is not None)
        if count:
            _free_memory()
        return count

    def __len__(self) -> int:
        return len(self._entries)


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_cache: Optional[PipelineCache] = None


def pipeline_cache() -> PipelineCache:
    global _cache
    if _cache is None:
        raw = os.environ.get("DIFFUSERS_PRESETS_KEEP_PIPELINES", "1")
        try:
            capacity = int(raw)
        except ValueError:
            raise PresetsError("input_invalid", f"DIFFUSERS_PRESETS_KEEP_PIPELINES={raw!r} is not a number.",
                               "set it to how many pipelines to keep loaded, e.g. 1.") from None
        _cache = PipelineCache(capacity)
    return _cache
