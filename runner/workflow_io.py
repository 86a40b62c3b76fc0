"""Reading workflows: API JSON, UI JSON, a PNG with embedded metadata, or stdin (contract §5.5).

Everything that cannot be read becomes a ``workflow_invalid`` :class:`PresetsError` that says
what is wrong with the file; nothing here raises anything else. Hostile files are refused
before they cost much: JSON nested deeper than :data:`MAX_JSON_DEPTH` or with integers beyond
Python's digit limit, PNGs whose header claims a decompression bomb, compressed text chunks
that inflate beyond :data:`MAX_TEXT_BYTES`. PNG text chunks are read without decoding pixels.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core.errors import PresetsError
from .workflow_shape import check_api_prompt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Real workflows nest about 8 levels; deeper JSON would only make later copies and dumps
# (which recurse) fail, so it is refused when read.
MAX_JSON_DEPTH = 100
# PIL's DecompressionBombError threshold (2 × Image.MAX_IMAGE_PIXELS).
MAX_PNG_PIXELS = 178_956_970
MAX_TEXT_BYTES = 64 * 1024 * 1024


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


def parse_json(
    text: str, what: str, code: str = "workflow_invalid", fix: str = "The file may be truncated; export it from ComfyUI again."
) -> Any:
    """``json.loads`` that turns every failure, including nesting and integer-size bombs, into
    ``PresetsError(code)``; ``what`` names the text in the message."""
    try:
        value = json.loads(text)
        too_deep = json_depth(value) > MAX_JSON_DEPTH
    except json.JSONDecodeError as ex:
        raise PresetsError(code, f"{what} is not valid JSON ({ex.msg} at line {ex.lineno}, column {ex.colno}).", fix) from None
    except RecursionError:
        too_deep = True
    except ValueError:  # the only other ValueError json raises: an integer beyond the digit limit
        limit = sys.get_int_max_str_digits()
        raise PresetsError(code, f"{what} holds an integer too long to read (more than {limit} digits).", fix) from None
    if too_deep:
        raise PresetsError(code, f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels of lists and objects).", fix)
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of lists and objects, without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:  # deeper is refused anyway: stop counting
            pending.extend((child, depth + 1) for child in item)
    return deepest


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
    return _classify(name, parse_json(text, name))


def _classify(name: str, parsed: Any) -> Workflow:
    if is_api_prompt(parsed):
        return Workflow(name, prompt=_checked_prompt(name, parsed))
    if is_ui_workflow(parsed):
        return Workflow(name, ui=parsed)
    if isinstance(parsed, dict) and is_api_prompt(parsed.get("prompt")):  # a /prompt request body
        extra = parsed.get("extra_data") if isinstance(parsed.get("extra_data"), dict) else {}
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra.get("extra_pnginfo"), dict) else {}
        ui = pnginfo.get("workflow") if is_ui_workflow(pnginfo.get("workflow")) else None
        return Workflow(name, prompt=_checked_prompt(name, parsed["prompt"]), ui=ui)
    raise _invalid(
        name,
        "this JSON is neither a ComfyUI workflow (an object with a 'nodes' list) nor an API "
        "prompt (an object whose values all have a 'class_type').",
        "Export the workflow from ComfyUI with Workflow → Export or Export (API).",
    )


def _checked_prompt(name: str, prompt: dict) -> dict:
    try:
        check_api_prompt(prompt)
    except PresetsError as ex:
        raise PresetsError(ex.code, f"{name}: {ex.message}", ex.fix) from None
    return prompt


def _from_png(name: str, data: bytes) -> Workflow:
    chunks = png_text_chunks(name, data)
    workflow = Workflow(name)
    for key in ("prompt", "workflow"):
        if key not in chunks:
            continue
        value = parse_json(chunks[key], f"{name}: the PNG's '{key}' metadata", fix="Save the image again.")
        if key == "prompt" and is_api_prompt(value):
            workflow.prompt = _checked_prompt(name, value)
        elif key == "workflow" and is_ui_workflow(value):
            workflow.ui = value
    if workflow.prompt is None and workflow.ui is None:
        raise _invalid(
            name,
            "the PNG has no embedded ComfyUI workflow or prompt.",
            "Use a PNG saved by ComfyUI's or the runner's SaveImage node (with metadata), or the workflow JSON.",
        )
    return workflow


def png_text_chunks(name: str, data: bytes) -> dict[str, str]:
    """The tEXt, zTXt and iTXt chunks of a PNG (a later chunk of the same key wins, as in PIL),
    read from the chunk list without decoding any pixels."""
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if len(body) < length:
            break  # truncated: keep what was read, like PIL's LOAD_TRUNCATED_IMAGES
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", body[:8])
            if width * height > MAX_PNG_PIXELS:
                raise _invalid(
                    name,
                    f"the PNG's header claims {width}×{height} pixels, a decompression bomb.",
                    "Use the workflow JSON, or a PNG saved by ComfyUI's SaveImage node.",
                )
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, _, rest = body.partition(b"\0")
            value = _text_chunk(name, kind, rest)
            if value is not None:
                texts[key.decode("latin-1")] = value
        elif kind == b"IEND":
            break
    return texts


def _text_chunk(name: str, kind: bytes, rest: bytes) -> Optional[str]:
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":  # compression method byte, then zlib data
        return _inflate(name, rest[1:]).decode("latin-1")
    if len(rest) < 2:
        return None
    compressed = rest[0] == 1
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return (_inflate(name, text) if compressed else text).decode("utf-8", errors="replace")


def _inflate(name: str, data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as ex:
        raise _invalid(name, f"a compressed text chunk of the PNG is damaged ({ex}).", "Save the image again.") from None
    if inflater.unconsumed_tail:
        raise _invalid(
            name,
            f"a compressed text chunk of the PNG inflates to more than {MAX_TEXT_BYTES // 2**20} MiB.",
            "Use the workflow JSON instead of this PNG.",
        )
    return text
