"""The headless host's model file listing: cached on folder mtimes (validation asks for it on
every prompt), never stale after a file is added, removed or put in a new subfolder."""

from __future__ import annotations

import os
from pathlib import Path

from diffusers_presets.core import host as host_module
from diffusers_presets.core.host import HeadlessHost


def age(folder: Path, seconds: int = 60) -> None:
    """Make every folder under ``folder`` look untouched for a while (as between prompts)."""
    for current, _dirs, _files in os.walk(folder):
        stat = os.stat(current)
        os.utime(current, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


def test_listing_follows_changes_and_reuses_unchanged_walks(tmp_path: Path, monkeypatch) -> None:
    host = HeadlessHost()
    host.models_root = tmp_path / "models"
    loras = host.models_root / "loras"
    loras.mkdir(parents=True)
    (loras / "a.safetensors").write_bytes(b"x")
    assert host.model_files("loras") == ["a.safetensors"]
    (loras / "b.safetensors").write_bytes(b"x")  # within the same clock tick as the walk
    assert host.model_files("loras") == ["a.safetensors", "b.safetensors"]

    age(loras)
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(host_module.os, "walk", lambda top: walks.append(top) or real_walk(top))
    assert host.model_files("loras") == ["a.safetensors", "b.safetensors"]
    assert host.model_files("loras") == ["a.safetensors", "b.safetensors"]
    assert len(walks) == 1  # the second listing reused the first walk

    (loras / "sub").mkdir()
    (loras / "sub" / "c.safetensors").write_bytes(b"x")
    (loras / "a.safetensors").unlink()
    assert host.model_files("loras") == ["b.safetensors", "sub/c.safetensors"]
    assert host.model_files("checkpoints") == []  # a folder that does not exist yet
    (host.models_root / "checkpoints").mkdir()
    (host.models_root / "checkpoints" / "m.safetensors").write_bytes(b"x")
    assert host.model_files("checkpoints") == ["m.safetensors"]
