"""What ``python -m runner serve`` was started with: one object every route table reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class ServerSettings:
    listen: str = "127.0.0.1"
    port: int = 8188
    output_dir: Path = Path("output")
    input_dir: Path = Path("input")
    temp_dir: Path = Path("temp")
    models_dir: Optional[Path] = None
    extra_model_paths: list[Path] = field(default_factory=list)
    # preset id -> weights source, from `--model PRESET=SOURCE`.
    model_overrides: dict[str, str] = field(default_factory=dict)
    user_directory: Path = Path("user")
    database_url: str = ""  # "" = sqlite:///<user_directory>/runner.db
    # None = no CORS (and the Origin/Host guard is on); "*" or an origin = --enable-cors-header.
    cors_origin: Optional[str] = None
    max_upload_size_mb: float = 100.0
    preview_method: str = "auto"  # none | auto | latent2rgb
    # A folder holding the ComfyUI frontend's static web root (index.html); None = the installed
    # comfyui-frontend-package, if any.
    front_end_root: Optional[Path] = None
    # History is capped by count and by age (0 = no age limit), as ComfyUI caps it at 10000.
    max_history: int = 10000
    max_history_age_days: float = 0
    # The Images API's options (openai_params.ApiOptions); None = from the environment.
    openai: Any = None

    @property
    def database_path(self) -> Path:
        url = self.database_url or f"sqlite:///{self.user_directory / 'runner.db'}"
        if not url.startswith("sqlite:///"):
            raise ValueError(f"unsupported database URL {url!r}: only sqlite:///PATH is supported")
        return Path(url[len("sqlite:///"):])
