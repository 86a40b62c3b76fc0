"""Runner tests: make the helper modules in this folder importable; every test starts with the
stub nodes' call log and step hooks empty."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_stubs  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_stub_nodes():
    engine_stubs.CALLS.clear()
    engine_stubs.StubSteps.HOOKS = []
    yield
    engine_stubs.CALLS.clear()
    engine_stubs.StubSteps.HOOKS = []
