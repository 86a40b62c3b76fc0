"""The pipeline cache's promises: capacity (also under concurrent loads), one load per key,
pipelines in use are not dropped, companions load outside the cache-wide lock, bookkeeping
does not grow, and a VRAM profile change re-places instead of reloading.

Most tests use a cache whose loader makes stand-in pipelines: the cache's logic does not depend
on what a pipeline is, and a stand-in load can be held open to force the races."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from diffusers_presets.core import cache as cache_module
from diffusers_presets.core.cache import CacheEntry, PipelineCache
from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.handle import load_handle
from diffusers_presets.core.host import RunContext, run_scope
from diffusers_presets.core.sampler import GenerationRequest, generate
from diffusers_presets.core.vram import VramPlan

# How long a held-open load waits for a second load that a correct cache never lets start.
RACE_WINDOW_S = 0.5


def stand_in(name: str, profile: str = "auto") -> SimpleNamespace:
    return SimpleNamespace(source=SimpleNamespace(cache_token=lambda: name), preset=SimpleNamespace(dtype="float32", id=name),
                           vram_profile=profile, family_name="stand-in")


class RecordingCache(PipelineCache):
    """Loads stand-ins; records what was resident at the start of each load. The first load
    stays open for RACE_WINDOW_S or until a second load starts, so that a cache that lets two
    loads overlap is caught doing it."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.resident_at_load: list[int] = []
        self.started: list[str] = []
        self.second_load = threading.Event()
        self.fail_next = False

    def _load(self, handle):
        with self._changed:
            self.resident_at_load.append(len(self._entries) + len(self._loading))
            self.started.append(handle.preset.id)
            first = len(self.started) == 1
        if first:
            self.second_load.wait(RACE_WINDOW_S)
        else:
            self.second_load.set()
        if self.fail_next:
            self.fail_next = False
            raise PresetsError("model_load_failed", f"{handle.preset.id}: broken on purpose.")
        return CacheEntry(SimpleNamespace(name=handle.preset.id, components={}),
                          VramPlan(handle.vram_profile, "none", "cpu", False, "stand-in"), 0.0)


def in_threads(*targets) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()


def test_a_new_pipeline_evicts_the_least_recently_used_one() -> None:
    cache = RecordingCache(capacity=2)
    cache.get(stand_in("a"))
    cache.get(stand_in("b"))
    cache.get(stand_in("a"))  # a is now the most recently used
    cache.get(stand_in("c"))
    assert len(cache) == 2
    assert cache.loads == 3
    cache.get(stand_in("a"))
    assert cache.loads == 3  # a stayed
    cache.get(stand_in("b"))
    assert cache.loads == 4  # b had been evicted
    assert max(cache.resident_at_load) <= 2


def test_capacity_holds_when_two_threads_load_different_keys() -> None:
    cache = RecordingCache(capacity=1)
    in_threads(lambda: cache.get(stand_in("a")), lambda: cache.get(stand_in("b")))
    assert cache.resident_at_load == [1, 1]  # each load started with nothing else resident
    assert len(cache) == 1


def test_two_threads_asking_for_the_same_key_load_it_once() -> None:
    cache = RecordingCache(capacity=2)  # room for a second load: only the dedupe prevents it
    got = []
    in_threads(lambda: got.append(cache.get(stand_in("a"))), lambda: got.append(cache.get(stand_in("a"))))
    assert cache.loads == 1 and cache.started == ["a"]
    assert got[0] is got[1]


def test_a_failed_load_reaches_every_waiter_and_leaves_no_bookkeeping() -> None:
    cache = RecordingCache(capacity=1)
    cache.fail_next = True
    errors = []

    def ask() -> None:
        try:
            cache.get(stand_in("a"))
        except PresetsError as exc:
            errors.append(exc.code)

    in_threads(ask, ask)
    assert errors and set(errors) == {"model_load_failed"}
    assert not cache._loading
    cache.get(stand_in("a"))  # the next request loads again
    assert len(cache) == 1


def test_load_bookkeeping_does_not_grow_with_the_number_of_keys(monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "_free_memory", lambda: None)  # stand-ins hold no memory to collect
    cache = RecordingCache(capacity=1)
    cache.second_load.set()
    for index in range(100):
        cache.get(stand_in(f"model-{index}"))
    assert len(cache) == 1 and not cache._loading
    assert cache.loads == 100


def test_a_pipeline_in_use_is_not_evicted_until_its_user_is_done() -> None:
    cache = RecordingCache(capacity=1)
    cache.second_load.set()
    order = []
    holding = threading.Event()

    def user_of_a() -> None:
        with cache.use(stand_in("a")):
            holding.set()
            order.append("a in use")
            threading.Event().wait(RACE_WINDOW_S)  # b asks meanwhile
            order.append("a released")

    def wants_b() -> None:
        holding.wait(10)
        cache.get(stand_in("b"))
        order.append("b loaded")

    in_threads(user_of_a, wants_b)
    assert order == ["a in use", "a released", "b loaded"]
    assert cache.resident_at_load == [1, 1]


def test_companions_load_outside_the_cache_wide_lock() -> None:
    """While a companion of a loads (slowly), another thread can still load b."""
    cache = RecordingCache(capacity=2)
    cache.second_load.set()
    cache.get(stand_in("a"))
    b_loaded = threading.Event()

    def slow_companion(pipeline) -> str:
        loader = threading.Thread(target=lambda: (cache.get(stand_in("b")), b_loaded.set()))
        loader.start()
        b_done = b_loaded.wait(5)
        loader.join(5)
        return f"companion of {pipeline.name}: b loaded meanwhile={b_done}"

    assert cache.companion(stand_in("a"), "redux", slow_companion) == "companion of a: b loaded meanwhile=True"
    assert cache.companion(stand_in("a"), "redux", lambda pipeline: "loaded twice") != "loaded twice"


def test_another_vram_profile_replaces_without_reading_weights_again() -> None:
    cache = RecordingCache(capacity=1)
    first = cache.get(stand_in("a", "auto"))
    second = cache.get(stand_in("a", "lowvram"))
    assert second is first and cache.loads == 1
    assert cache.placements == 1 and cache.entry(stand_in("a", "lowvram")).plan.requested == "lowvram"


# --- real tiny pipelines ---------------------------------------------------------------------------
def test_generations_on_one_pipeline_wait_for_each_other(host, tiny_models, fresh_cache) -> None:
    """Two threads generate with the same pipeline: the second starts its steps only after
    the first has finished all of its own (no interleaving), and each run gets only its own
    progress."""
    handle = load_handle("demo/zimage")
    steps_seen: list[str] = []
    first_step = threading.Event()
    other_started = threading.Event()
    per_run: dict[str, list] = {"one": [], "two": []}

    def generate_as(name: str) -> None:
        def on_progress(value: int, total: int) -> None:
            per_run[name].append(value)
            steps_seen.append(name)
            if not first_step.is_set():
                first_step.set()
                other_started.wait(RACE_WINDOW_S)  # a second run that does not wait would step now
            elif steps_seen[0] != name:
                other_started.set()

        with run_scope(RunContext(on_progress)):
            generate(handle, GenerationRequest("a fox", width=64, height=64))

    in_threads(lambda: generate_as("one"), lambda: generate_as("two"))
    steps = handle.preset.steps
    first = steps_seen[0]
    assert steps_seen == [first] * steps + [n for n in ("one", "two") if n != first] * steps
    assert per_run["one"] == per_run["two"] == list(range(1, steps + 1))
    assert fresh_cache.loads == 1


def test_evicted_pipelines_are_released(host, tiny_models, fresh_cache) -> None:
    import gc
    import weakref

    sdxl = fresh_cache.get(load_handle("demo/sdxl"))
    released = weakref.ref(sdxl)
    del sdxl
    fresh_cache.get(load_handle("demo/zimage"))
    gc.collect()
    assert released() is None and len(fresh_cache) == 1


@pytest.mark.parametrize("profile", ["balanced", "lowvram"])
def test_replacing_undoes_offload_hooks(profile, host, tiny_models, fresh_cache) -> None:
    """Placement paths run on the CPU standing in for the accelerator; unplacing removes
    every hook they installed and the images stay the same."""
    from diffusers_presets.core.vram import place_pipeline, unplace_pipeline

    handle = load_handle("demo/sdxl")
    before = generate(handle, GenerationRequest("a fox", seed=5)).images
    pipe = fresh_cache.get(handle)
    place_pipeline(pipe, VramPlan(profile, profile, "cpu", True, "test"))
    assert hooked_modules(pipe)
    unplace_pipeline(pipe)
    assert not hooked_modules(pipe)
    assert torch.equal(generate(handle, GenerationRequest("a fox", seed=5)).images, before)
    assert fresh_cache.loads == 1


def hooked_modules(pipe) -> list[str]:
    hooked = []
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            for module_name, module in component.named_modules():
                registry = getattr(module, "_diffusers_hook", None)
                if getattr(module, "_hf_hook", None) is not None or (registry is not None and registry.hooks):
                    hooked.append(f"{name}.{module_name}")
    return hooked
