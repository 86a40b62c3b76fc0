"""Parse what a user pastes as a LoRA reference into a :class:`LoraRef`.

Accepted: Civitai AIRs (``urn:air:sdxl:lora:civitai:328553@368189``, ``civitai:328553@368189``,
``328553@368189``, a bare model id), Civitai URLs on civitai.com/.red/.green (or the configured
``CIVITAI_BASE_URL`` host), https URLs to ``.safetensors`` files, Hugging Face repo files and
local files. Parsing is strict and offline; the client resolves what a reference points to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import PresetsError

CIVITAI_HOSTS = ("civitai.com", "civitai.red", "civitai.green")
LORA_AIR_TYPES = ("lora", "lycoris", "dora")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".zip")
HF_ENDPOINT = "https://huggingface.co"
_INT32_MAX = 2**31 - 1

ACCEPTED_FORMS = (
    "urn:air:sdxl:lora:civitai:328553@368189 (a Civitai AIR; +fileId and .safetensors may follow)",
    "civitai:328553@368189 or 328553@368189 (Civitai model id @ version id)",
    "328553 (a Civitai model id: its default version is used and pinned)",
    "https://civitai.com/models/328553?modelVersionId=368189 (also civitai.red and civitai.green)",
    "https://civitai.com/api/download/models/368189 or https://civitai.com/api/v1/model-versions/368189",
    "https://example.org/path/style.safetensors (an https URL of a .safetensors file)",
    "hf://owner/repo/file.safetensors, hf://owner/repo@revision/file.safetensors or "
    "https://huggingface.co/owner/repo/resolve/main/file.safetensors",
    "style.safetensors (a file in ComfyUI's loras folder), loras/style.safetensors (relative to "
    "MODEL_BASE_PATH) or an absolute path",
)

# Prefix segments are ecosystem and type; the official grammar makes both optional and binds
# them left to right, so `lora:civitai:1@2` needs the fix-up in _parse_air.
_AIR = re.compile(
    r"^(?:urn:)?(?:air:)?((?:[a-z0-9_\-]+:){0,2})civitai:(\d+)(?:@(\d+))?(?:\+(\d+))?(?:\.([a-z0-9_\-]+))?$"
)
_MODEL_AT_VERSION = re.compile(r"^(\d+)(?:@(\d+))?$")


@dataclass(frozen=True)
class LoraRef:
    """A parsed reference. ``kind`` is ``civitai``, ``url``, ``huggingface`` or ``local``."""

    kind: str
    text: str  # the reference as the user gave it, trimmed
    model_id: Optional[int] = None
    version_id: Optional[int] = None
    file_id: Optional[int] = None
    ecosystem: Optional[str] = None
    url: Optional[str] = None  # url and huggingface: the file URL
    path: Optional[str] = None  # local: the path as given; huggingface: the file in the repo
    repo_id: Optional[str] = None  # huggingface
    revision: Optional[str] = None  # huggingface

    def describe(self) -> str:
        if self.kind == "civitai":
            return format_air(self.model_id, self.version_id, self.file_id, self.ecosystem)
        return self.url or self.path or self.text


def format_air(model_id: Optional[int], version_id: Optional[int], file_id: Optional[int] = None,
               ecosystem: Optional[str] = None, air_type: str = "lora") -> str:
    """The canonical AIR, e.g. ``urn:air:sdxl:lora:civitai:328553@368189``."""
    text = f"urn:air:{ecosystem or 'other'}:{air_type}:civitai:{model_id}"
    if version_id is not None:
        text += f"@{version_id}"
    if file_id is not None:
        text += f"+{file_id}"
    return text


def invalid_reference(text: str, why: str) -> PresetsError:
    forms = "; ".join(ACCEPTED_FORMS)
    return PresetsError("lora_invalid", f"the LoRA reference {text!r} is not usable: {why}.",
                        f"give one of these forms: {forms}.")


def civitai_hosts() -> set[str]:
    """Host names (with port where one is given) that are Civitai: the public hosts and the
    configured ``CIVITAI_BASE_URL`` host (a mirror or the test server)."""
    from .client import base_url

    hosts = {*CIVITAI_HOSTS, *(f"www.{host}" for host in CIVITAI_HOSTS)}
    hosts.add(urlsplit(base_url()).netloc.lower())
    return hosts


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_ENDPOINT).rstrip("/")


def parse_reference(text: str) -> LoraRef:
    """Parse ``text`` or raise ``lora_invalid`` listing the accepted forms."""
    text = (text or "").strip()
    if not text:
        raise invalid_reference(text, "it is empty")
    lowered = text.lower()
    if _AIR.match(lowered):
        return _parse_air(text, lowered)
    match = _MODEL_AT_VERSION.match(text)
    if match:
        return _civitai(text, match.group(1), match.group(2))
    if lowered.startswith("hf://"):
        return _parse_hf_scheme(text)
    if "://" in text:
        return _parse_url(text)
    return _parse_local(text)


def _checked_id(text: str, value: Optional[str], what: str) -> Optional[int]:
    if value is None:
        return None
    number = int(value)
    if not 0 < number <= _INT32_MAX:
        raise invalid_reference(text, f"the {what} {value} is out of range")
    return number


def _civitai(text: str, model: Optional[str], version: Optional[str], file_id: Optional[str] = None,
             ecosystem: Optional[str] = None) -> LoraRef:
    return LoraRef("civitai", text, model_id=_checked_id(text, model, "model id"),
                   version_id=_checked_id(text, version, "version id"),
                   file_id=_checked_id(text, file_id, "file id"), ecosystem=ecosystem)


def _parse_air(text: str, lowered: str) -> LoraRef:
    prefix, model, version, file_id, fmt = _AIR.match(lowered).groups()
    segments = [part for part in prefix.split(":") if part]
    ecosystem, air_type = None, None
    if len(segments) == 2:
        ecosystem, air_type = segments
    elif segments and segments[0] in LORA_AIR_TYPES:
        air_type = segments[0]
    elif segments:
        ecosystem = segments[0]
    if air_type is not None and air_type not in LORA_AIR_TYPES:
        raise invalid_reference(text, f"its type is '{air_type}', but this loader takes {', '.join(LORA_AIR_TYPES)}")
    if fmt is not None and fmt not in ("safetensor", "safetensors"):
        raise invalid_reference(text, f"the format '{fmt}' is not safetensors (pickle formats are refused)")
    return _civitai(text, model, version, file_id, ecosystem)


def _parse_url(text: str) -> LoraRef:
    parts = urlsplit(text)
    query = parse_qs(parts.query)
    if "token" in query:
        # Never keep a key that would travel on into workflow JSON and PNG metadata.
        raise PresetsError("lora_invalid", "the LoRA URL carries a Civitai API key (?token=...).",
                           "remove the token from the URL and set the CIVITAI_API_KEY environment variable instead.")
    host = parts.netloc.lower()
    if parts.scheme not in ("http", "https") or not host:
        raise invalid_reference(text, "only http(s) URLs are downloaded")
    if host in civitai_hosts():
        return _parse_civitai_url(text, parts.path, query)
    if host in (urlsplit(hf_endpoint()).netloc.lower(), urlsplit(HF_ENDPOINT).netloc):  # a mirror, or the Hub
        return _parse_hf_url(text, parts.path)
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise invalid_reference(text, "plain http is only accepted from this machine; use https")
    if not parts.path.lower().endswith(SAFETENSORS_SUFFIXES):
        raise invalid_reference(text, "a URL outside Civitai and Hugging Face must name a .safetensors file")
    return LoraRef("url", text, url=text)


def _parse_civitai_url(text: str, path: str, query: dict) -> LoraRef:
    segments = [part for part in path.split("/") if part]

    def first(*names: str) -> Optional[str]:
        for name in names:
            if query.get(name) and query[name][0].isdigit():
                return query[name][0]
        return None

    def numeric(index: int) -> Optional[str]:
        return segments[index] if len(segments) > index and segments[index].isdigit() else None

    if len(segments) >= 2 and segments[0] == "models" and numeric(1):
        return _civitai(text, numeric(1), first("modelVersionId", "version"))
    if segments[:3] == ["api", "download", "models"] and numeric(3):
        return _civitai(text, None, numeric(3), first("fileId"))
    if segments[:3] == ["api", "v1", "model-versions"] and numeric(3):
        return _civitai(text, None, numeric(3))
    if segments[:3] == ["api", "v1", "models"] and numeric(3):
        return _civitai(text, numeric(3), first("modelVersionId"))
    if segments[:1] == ["model-versions"] and numeric(1):
        return _civitai(text, None, numeric(1))
    raise invalid_reference(text, "this Civitai URL names no model or model version")


def _hf_ref(text: str, repo: str, revision: str, filename: str) -> LoraRef:
    if not filename.lower().endswith(SAFETENSORS_SUFFIXES) or ".." in PurePosixPath(filename).parts:
        raise invalid_reference(text, "a Hugging Face reference must name a .safetensors file in the repo")
    url = f"{hf_endpoint()}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"
    return LoraRef("huggingface", text, url=url, path=filename, repo_id=repo, revision=revision)


def _parse_hf_scheme(text: str) -> LoraRef:
    owner, _, rest = text[len("hf://"):].partition("/")
    name, _, filename = rest.partition("/")
    name, _, revision = name.partition("@")
    if not owner or not name or not filename:
        raise invalid_reference(text, "an hf:// reference needs owner/repo[@revision]/file.safetensors")
    return _hf_ref(text, f"{owner}/{name}", revision or "main", filename)


def _parse_hf_url(text: str, path: str) -> LoraRef:
    segments = [part for part in path.split("/") if part]
    if len(segments) >= 5 and segments[2] in ("resolve", "blob"):
        return _hf_ref(text, "/".join(segments[:2]), unquote(segments[3]), unquote("/".join(segments[4:])))
    raise invalid_reference(text, "a Hugging Face URL must look like https://huggingface.co/owner/repo/resolve/"
                                  "<revision>/<file>.safetensors")


def _parse_local(text: str) -> LoraRef:
    lowered = text.lower()
    if lowered.endswith(PICKLE_SUFFIXES):
        raise invalid_reference(text, "only .safetensors files are loaded (pickle formats can run code)")
    if not lowered.endswith(SAFETENSORS_SUFFIXES):
        raise invalid_reference(text, "it is neither a Civitai reference, a URL nor a .safetensors file")
    return LoraRef("local", text, path=text)
