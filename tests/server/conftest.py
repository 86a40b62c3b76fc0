"""Server tests: a server on a free loopback port, in a thread, per test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "runner")]

from diffusers_presets.runner import core_nodes  # noqa: E402
from diffusers_presets.runner.server.main import ThreadedServer  # noqa: E402
from server_helpers import make_settings  # noqa: E402


@pytest.fixture
def make_server(tmp_path: Path, host):
    """``make_server(registry=None, **settings)`` → a started :class:`ThreadedServer`,
    stopped at the end of the test."""
    started: list[ThreadedServer] = []

    def factory(registry: Optional[dict] = None, root: Optional[Path] = None, **overrides: Any) -> ThreadedServer:
        server = ThreadedServer(make_settings(root or tmp_path, **overrides), registry).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
    core_nodes.set_directories(output=Path.cwd() / "output", input=Path.cwd() / "input", temp=Path.cwd() / "temp")
