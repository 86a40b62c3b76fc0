"""Reading workflows: API JSON, UI JSON, a PNG with embedded metadata, or stdin (contract §5.5).

Everything that cannot be read becomes a ``workflow_invalid`` :class:`PresetsError` that says
what is wrong with the file; nothing here raises anything else.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core.errors import PresetsError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Workflow:
    """A loaded workflow: an API prompt, a UI workflow, or both (a PNG written by ComfyUI)."""

    source: str
    prompt: Optional[dict] = None  # API format
    ui: Optional[dict] = None  # UI format (version 0.4 or 1)


def _invalid(source: str, message: str, fix: str) -> PresetsError:
    return PresetsError("workflow_invalid", f"{source}: {message}", fix)


def is_api_prompt(data: Any) -> bool:
    """ComfyUI's test: every top-level value is an object with ``class_type``."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, dict) and "class_type" in v for v in data.values())
    )


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def read_workflow(source: str) -> Workflow:
    """Read ``source`` (a path, or ``-`` for stdin)."""
    if source == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise _invalid(name, "file not found.", "Check the path of the workflow file.") from None
        except OSError as ex:
            raise _invalid(name, f"cannot be read ({ex.strerror}).", "Check the path and its permissions.") from None
    if data.startswith(PNG_SIGNATURE):
        return _from_png(name, data)
    return _from_json_bytes(name, data)


def _from_json_bytes(name: str, data: bytes) -> Workflow:
    if not data.strip():
        raise _invalid(name, "the file is empty.", "Save the workflow again from ComfyUI (Workflow → Export).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as ex:
        raise _invalid(
            name,
            f"not UTF-8 text (byte {ex.start}); a workflow is a JSON file or a PNG.",
            "Export the workflow from ComfyUI as JSON, or pass the PNG it saved.",
        ) from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as ex:
        raise _invalid(
            name,
            f"not valid JSON ({ex.msg} at line {ex.lineno}, column {ex.colno}).",
            "The file may be truncated; export it from ComfyUI again.",
        ) from None
    return _classify(name, parsed)


def _classify(name: str, parsed: Any) -> Workflow:
    if is_api_prompt(parsed):
        return Workflow(name, prompt=parsed)
    if is_ui_workflow(parsed):
        return Workflow(name, ui=parsed)
    if isinstance(parsed, dict) and is_api_prompt(parsed.get("prompt")):  # a /prompt request body
        extra = parsed.get("extra_data") if isinstance(parsed.get("extra_data"), dict) else {}
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra.get("extra_pnginfo"), dict) else {}
        ui = pnginfo.get("workflow") if is_ui_workflow(pnginfo.get("workflow")) else None
        return Workflow(name, prompt=parsed["prompt"], ui=ui)
    raise _invalid(
        name,
        "this JSON is neither a ComfyUI workflow (an object with a 'nodes' list) nor an API "
        "prompt (an object whose values all have a 'class_type').",
        "Export the workflow from ComfyUI with Workflow → Export or Export (API).",
    )


def _from_png(name: str, data: bytes) -> Workflow:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            chunks = dict(getattr(image, "text", {}) or {})
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as ex:
        raise _invalid(name, f"the PNG cannot be read ({ex}).", "The file may be truncated; save it again.") from None
    workflow = Workflow(name)
    for key in ("prompt", "workflow"):
        if key not in chunks:
            continue
        try:
            value = json.loads(chunks[key])
        except json.JSONDecodeError as ex:
            raise _invalid(name, f"the PNG's '{key}' metadata is not valid JSON ({ex.msg}).", "Save the image again.") from None
        if key == "prompt" and is_api_prompt(value):
            workflow.prompt = value
        elif key == "workflow" and is_ui_workflow(value):
            workflow.ui = value
    if workflow.prompt is None and workflow.ui is None:
        raise _invalid(
            name,
            "the PNG has no embedded ComfyUI workflow or prompt.",
            "Use a PNG saved by ComfyUI's or the runner's SaveImage node (with metadata), or the workflow JSON.",
        )
    return workflow
