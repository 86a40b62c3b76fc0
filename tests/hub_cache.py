"""A local Hugging Face cache, laid out the way huggingface_hub stores a downloaded snapshot."""

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Put ``folder`` into ``cache`` as the ``main`` snapshot of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
