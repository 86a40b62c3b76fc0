"""Test setup: import the pack as ``diffusers_presets`` (the way the runner does) and share
tiny models between tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spin-waits
# made each conv 30x slower. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import runner  # noqa: E402

runner.load_pack()


import pytest  # noqa: E402

from diffusers_presets.core import cache as cache_module  # noqa: E402
from diffusers_presets.core.host import HeadlessHost, RunContext, run_scope, set_host  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory per test session, so the tiny models are built once."""
    path = tmp_path_factory.mktemp("dp-cache")
    os.environ["DIFFUSERS_PRESETS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tiny_cache_dir: Path) -> dict[str, Path]:
    from diffusers_presets.core.sources import ensure_tiny_models

    return ensure_tiny_models()


@pytest.fixture
def host(tiny_cache_dir: Path, tmp_path: Path) -> HeadlessHost:
    """A fresh headless host whose models folder is empty; the test runs inside a run scope
    (``host.run``) whose progress is recorded in ``host.progress_events``."""
    fresh = HeadlessHost()
    fresh.models_root = tmp_path / "models"
    fresh.progress_events = []
    fresh.run = RunContext(lambda value, total: fresh.progress_events.append((value, total)))
    set_host(fresh)
    with run_scope(fresh.run):
        yield fresh
    set_host(HeadlessHost())


@pytest.fixture
def fresh_cache() -> cache_module.PipelineCache:
    """An empty process-wide pipeline cache for tests that count loads."""
    cache_module._cache = cache_module.PipelineCache(capacity=1)
    yield cache_module._cache
    cache_module._cache = None
