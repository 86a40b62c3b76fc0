"""One error vocabulary for ComfyUI, the CLI and HTTP.

Every failure a user can cause is a :class:`PresetsError` with a stable ``code``, a message
that says what was wrong and a ``fix`` that says what to do. Codes never change meaning;
the CLI prints them, the server returns them and ComfyUI shows them in the node error.
"""

from __future__ import annotations

# Stable codes. Add new ones here so the vocabulary stays in one place.
CODES = {
    "preset_not_found": "no preset with that id",
    "preset_invalid": "a preset file is malformed",
    "preset_read_only": "a shipped preset cannot be deleted, or there is no user presets folder to write to",
    "model_not_found": "the model weights are not where the preset says",
    "model_load_failed": "the weights are there but could not be loaded",
    "size_invalid": "width/height break the family's size rule",
    "input_invalid": "a node input has a value the node cannot use",
    "family_mismatch": "a node got a pipeline of a family it does not support",
    "interrupted": "the user interrupted the run",
    "generation_failed": "the pipeline raised while generating",
    "lora_not_found": "a LoRA reference points to nothing",
    "lora_invalid": "a LoRA reference or file is malformed",
    "lora_incompatible": "a LoRA was made for another model family",
    "civitai_auth_required": "Civitai needs an API key for this download",
    "civitai_early_access": "the model version is in early access",
    "civitai_not_found": "Civitai has no such model or version",
    "civitai_archived": "the model version was archived and has no files",
    "civitai_rate_limited": "Civitai asked us to slow down",
    "civitai_unavailable": "Civitai did not answer usefully",
    "download_failed": "a download failed or did not verify",
    "workflow_invalid": "a workflow file cannot be read or validated",
    "internal_error": "an unexpected failure in Diffusers Presets itself (a bug)",
}


class PresetsError(Exception):
    """A failure the user can fix. ``str()`` gives ``[code] message Fix: fix``."""

    def __init__(self, code: str, message: str, fix: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}; add it to core.errors.CODES")
        self.code = code
        self.message = message
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "fix": self.fix}


class Interrupted(PresetsError):
    """Raised between steps when the host asks generation to stop."""

    def __init__(self, message: str = "Generation was interrupted.") -> None:
        super().__init__("interrupted", message, "")


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for error messages that must stay on one line."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
