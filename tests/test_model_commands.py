"""`python -m runner presets` and `python -m runner tiny-models DIR`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.expected import SHIPPED

ROOT = Path(__file__).resolve().parent.parent


def runner(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_presets_json_lists_fixed_parameters_and_presence(tmp_path: Path) -> None:
    result = runner("presets", "--json", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    for preset_id, (family, steps, cfg, sampler) in SHIPPED.items():
        row = rows[preset_id]
        assert (row["family"], row["steps"], row["cfg"]) == (family, steps, cfg)
        assert row["sampler"] == (sampler or "pipeline default")
        assert row["present"] is False  # an empty Hugging Face cache
    assert rows["demo/flux"]["present"] is True and rows["demo/flux"]["source"].startswith("tiny")


def test_presets_table_and_a_broken_user_preset(tmp_path: Path) -> None:
    table = runner("presets")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["id", "family", "steps"]
    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "bad.yaml").write_text("cfg: lots\n")
    broken = runner("presets", env={"PRESETS_DIR": str(tmp_path)})
    assert broken.returncode == 2
    assert "[preset_invalid]" in broken.stderr and "bad.yaml" in broken.stderr and "Traceback" not in broken.stderr


def test_tiny_models_writes_every_family_in_diffusers_format(tmp_path: Path) -> None:
    result = runner("tiny-models", str(tmp_path / "tiny"))
    assert result.returncode == 0, result.stderr
    # no library warnings: transformers' "install torchvision" advice, diffusers' FluxPosEmbed notice
    assert result.stderr == ""
    for name in ("sdxl", "chroma", "flux", "zimage", "anima", "flux_redux"):
        folder = tmp_path / "tiny" / name
        assert folder.is_dir() and any(folder.glob("*index.json")), name
        assert f"{name}: " in result.stdout


def test_tiny_models_into_a_folder_that_cannot_exist(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")
    result = runner("tiny-models", str(tmp_path / "file" / "tiny"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: [input_invalid] cannot write the tiny models to {tmp_path / 'file' / 'tiny'}")
