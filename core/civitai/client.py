"""Civitai REST client: model-version metadata and the mapping of every failure to a
:class:`PresetsError` a user can act on.

The API key comes from ``CIVITAI_API_KEY`` (or ``CIVITAI_API_TOKEN``, or the file named by
``CIVITAI_API_KEY_FILE``, default ``~/.civitai/comfy-api-key``). It is only ever sent as an
``Authorization: Bearer`` header to Civitai hosts and is scrubbed from every error text.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..errors import PresetsError
from .air import LoraRef, civitai_hosts, format_air
from .transport import CannotConnect, HttpStatusError, TransportError, host_of, open_url, with_retries

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://civitai.com"
# civitai.com went SFW-only in 2026; mature models answer 404 there but not on civitai.red.
FALLBACK_BASE_URL = "https://civitai.red"
LORA_MODEL_TYPES = ("LORA", "LoCon", "DoRA")
AIR_TYPE = {"LORA": "lora", "LoCon": "lycoris", "DoRA": "dora"}
_SKIPPED_FILE_TYPES = ("Config", "Archive", "Workflow", "Training Data")
KEY_FIX = "set the CIVITAI_API_KEY environment variable to a key from https://civitai.com/user/account and run again."
API_TIMEOUT_S = 30.0
OFFLINE_FIX = ("connect to the network (or check CIVITAI_BASE_URL) and run again; LoRAs downloaded before work "
               "offline when referenced with their version (model@version) or by file name.")


def base_url() -> str:
    return (os.environ.get("CIVITAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def api_key() -> Optional[str]:
    for name in ("CIVITAI_API_KEY", "CIVITAI_API_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    key_file = Path(os.environ.get("CIVITAI_API_KEY_FILE") or "~/.civitai/comfy-api-key").expanduser()
    try:
        return key_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def redact(text: str) -> str:
    """``text`` with the API key (if any) replaced, for anything that is shown or logged."""
    key = api_key()
    return text.replace(key, "***") if key and text else text


def auth_headers(url: str) -> dict[str, str]:
    """The Bearer header for Civitai hosts; nothing for any other host."""
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key and host_of(url) in civitai_hosts() else {}


@dataclass(frozen=True)
class CivitaiFile:
    id: int
    name: str
    download_url: str
    size_bytes: Optional[int]  # from sizeKB, which is a float: compare with a tolerance
    sha256: Optional[str]  # lower-case hex, None while Civitai has not hashed the file yet
    format: str
    type: str
    primary: bool


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model_id: int
    name: str
    model_name: str
    model_type: str
    base_model: str
    trained_words: tuple[str, ...]
    files: tuple[CivitaiFile, ...]
    air: str

    def pick_file(self, file_id: Optional[int] = None) -> CivitaiFile:
        """The file to download: ``file_id`` when given, else the primary safetensors file."""
        label = f"{self.model_name} ({self.name}, version {self.id})"
        if not self.files:
            raise PresetsError("civitai_archived", f"Civitai lists no files for {label}: the model is archived.",
                               "pick another version or model.")
        if file_id is not None:
            chosen = next((f for f in self.files if f.id == file_id), None)
            if chosen is None:
                raise PresetsError("civitai_not_found", f"{label} has no file {file_id}.",
                                   f"use one of its file ids: {', '.join(str(f.id) for f in self.files)}.")
        else:
            usable = [f for f in self.files if f.type not in _SKIPPED_FILE_TYPES]
            chosen = next((f for f in usable if f.primary and f.format == "SafeTensor"), None) or next(
                (f for f in usable if f.format == "SafeTensor"), None)
            if chosen is None:
                formats = ", ".join(sorted({f.format for f in self.files}))
                raise PresetsError("lora_invalid", f"{label} has no safetensors file (it has: {formats}).",
                                   "pick a version that ships .safetensors; pickle formats are refused.")
        if chosen.format != "SafeTensor" or not chosen.name.lower().endswith(".safetensors"):
            raise PresetsError("lora_invalid", f"file {chosen.id} of {label} is {chosen.format} ({chosen.name!r}), "
                               "not safetensors; pickle files can run code and are refused.",
                               "pick a version or file that ships .safetensors.")
        return chosen


class CivitaiClient:
    def __init__(self, base: Optional[str] = None, timeout: float = API_TIMEOUT_S) -> None:
        self.base = (base or base_url()).rstrip("/")
        self.timeout = timeout

    def _get_json(self, path: str, what: str) -> dict[str, Any]:
        def once(base: str) -> dict[str, Any]:
            url = f"{base}{path}"
            headers = {"Accept": "application/json", **auth_headers(url)}

            def call() -> dict[str, Any]:
                with open_url(url, headers, self.timeout) as response:
                    if response.status != 200:
                        raise TransportError(f"unexpected HTTP {response.status} for {path}")
                    return json.loads(response.read().decode("utf-8"))

            return with_retries(call, f"Civitai {what}")

        try:
            try:
                return once(self.base)
            except HttpStatusError as exc:
                if exc.status != 404 or self.base != DEFAULT_BASE_URL:
                    raise
                log.info("Civitai %s: not on %s, trying %s", what, self.base, FALLBACK_BASE_URL)
                return once(FALLBACK_BASE_URL)
        except HttpStatusError as exc:
            raise error_for_status(exc, what) from None
        except CannotConnect as exc:
            raise PresetsError("civitai_unavailable", f"cannot reach Civitai for {what}: {exc.host} - {exc.reason}; "
                               "this machine looks offline.", OFFLINE_FIX) from None
        except TransportError as exc:
            raise PresetsError("civitai_unavailable", redact(f"Civitai did not answer for {what}: {exc}."),
                               "check the network connection (or CIVITAI_BASE_URL) and try again.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise PresetsError("civitai_unavailable", f"Civitai sent an unreadable answer for {what}: {exc}.",
                               "try again later.") from None

    def model_version(self, version_id: int) -> ModelVersion:
        data = self._get_json(f"/api/v1/model-versions/{version_id}", f"model version {version_id}")
        return parse_model_version(data, f"model version {version_id}")

    def default_version_id(self, model_id: int) -> int:
        """The version the creator designates as the default (the first listed)."""
        data = self._get_json(f"/api/v1/models/{model_id}", f"model {model_id}")
        versions = data.get("modelVersions") or []
        if not versions or not isinstance(versions[0].get("id"), int):
            raise PresetsError("civitai_not_found", f"Civitai model {model_id} has no published version.",
                               "check the model id, or give model@version.")
        return versions[0]["id"]

    def resolve(self, ref: LoraRef) -> tuple[ModelVersion, CivitaiFile]:
        """Metadata and file for a Civitai reference, checked to be a safetensors LoRA."""
        version_id = ref.version_id or self.default_version_id(ref.model_id)
        if ref.version_id is None:
            log.info("Civitai model %s: using its default version %s", ref.model_id, version_id)
        version = self.model_version(version_id)
        if ref.model_id is not None and version.model_id != ref.model_id:
            raise PresetsError("lora_invalid",
                               f"Civitai version {version_id} belongs to model {version.model_id}, not {ref.model_id}.",
                               f"use {format_air(version.model_id, version_id)} or check the ids.")
        if version.model_type not in LORA_MODEL_TYPES:
            raise PresetsError("lora_invalid", f"{version.model_name} (version {version_id}) is a {version.model_type}, "
                               "not a LoRA.", f"this loader takes Civitai models of type {', '.join(LORA_MODEL_TYPES)}.")
        return version, version.pick_file(ref.file_id)


def parse_model_version(data: dict[str, Any], what: str) -> ModelVersion:
    """Validate a /model-versions answer; a partial answer (Civitai outages send them) is an error
    rather than something to cache."""
    try:
        model = data.get("model") or {}
        files = tuple(
            CivitaiFile(
                id=int(item["id"]), name=str(item["name"]), download_url=str(item["downloadUrl"]),
                size_bytes=round(float(item["sizeKB"]) * 1024) if item.get("sizeKB") is not None else None,
                sha256=((item.get("hashes") or {}).get("SHA256") or "").lower() or None,
                format=str((item.get("metadata") or {}).get("format") or "Other"),
                type=str(item.get("type") or "Model"), primary=bool(item.get("primary")),
            )
            for item in data.get("files") or []
        )
        version = ModelVersion(
            id=int(data["id"]), model_id=int(data["modelId"]), name=str(data.get("name") or ""),
            model_name=str(model.get("name") or f"model {data['modelId']}"), model_type=str(model["type"]),
            base_model=str(data.get("baseModel") or ""),
            trained_words=tuple(str(w) for w in data.get("trainedWords") or () if str(w).strip()),
            files=files, air=str(data.get("air") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PresetsError("civitai_unavailable", f"Civitai's answer for {what} is incomplete ({exc!r} missing or "
                           "malformed).", "try again later.") from None
    if not version.air:
        air_type = AIR_TYPE.get(version.model_type, "lora")
        version = replace(version, air=format_air(version.model_id, version.id, air_type=air_type))
    return version


def _error_text(exc: HttpStatusError) -> tuple[str, dict[str, Any]]:
    try:
        payload = json.loads(exc.body)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    text = payload.get("message") or payload.get("error") or exc.body.strip()[:300]
    return redact(str(text)), payload


def error_for_status(exc: HttpStatusError, what: str) -> PresetsError:
    """The :class:`PresetsError` for a Civitai HTTP failure on ``what``."""
    text, payload = _error_text(exc)
    detail = f" ({text})" if text else ""
    status = exc.status
    if status == 401:
        if api_key():
            return PresetsError("civitai_auth_required", f"Civitai refused the API key for {what}{detail}.",
                                "check that CIVITAI_API_KEY holds a current key, and that your account may download "
                                "this model (some creators disable downloads).")
        return PresetsError("civitai_auth_required", f"Civitai requires a login to download {what}{detail}.", KEY_FIX)
    if status == 403:
        if "early access" in f"{payload.get('error', '')} {text}".lower():
            deadline = payload.get("deadline") or payload.get("earlyAccessEndsAt")
            until = f" until {deadline}" if deadline else ""
            return PresetsError("civitai_early_access", f"{what} is in Early Access on Civitai{until}{detail}.",
                                f"wait{until}, or get early access on civitai.com with the account whose key is in "
                                "CIVITAI_API_KEY.")
        return PresetsError("civitai_auth_required", f"Civitai denies access to {what}{detail}.",
                            "check that the account of CIVITAI_API_KEY may download this model." if api_key() else KEY_FIX)
    if status in (400, 404):
        return PresetsError("civitai_not_found", f"Civitai has no {what}{detail}.",
                            "check the id or URL; mature models may need CIVITAI_BASE_URL=https://civitai.red.")
    if status == 410:
        return PresetsError("civitai_archived", f"{what} is archived on Civitai and cannot be downloaded{detail}.",
                            "pick another version or model.")
    if status == 429:
        return PresetsError("civitai_rate_limited", f"Civitai rate-limited the request for {what}{detail}.",
                            "wait a few minutes and try again.")
    return PresetsError("civitai_unavailable", f"Civitai answered HTTP {status} for {what}{detail}.",
                        "try again later.")
