"""Errors of the OpenAI-compatible Images API: OpenAI's envelope, statuses and retry headers.

``{"error": {"message", "type", "param", "code"}}``; ``type`` is ``invalid_request_error`` for
4xx and ``server_error`` for 5xx; ``code`` is a stable string (the core's error codes where a
core failure is the cause). The openai SDK picks its exception class from the status alone and
retries 408/409/429/5xx unless ``x-should-retry: false`` says otherwise, so every deterministic
failure carries ``x-should-retry: false``.
"""

from __future__ import annotations

from typing import Optional

from aiohttp import web

# core error code -> (status, API code, param). Unlisted codes are server failures (500).
_CORE_CODES: dict[str, tuple[int, str, Optional[str]]] = {
    "preset_not_found": (404, "preset_not_found", "model"),
    "size_invalid": (400, "unsupported_size", "size"),
    "input_invalid": (400, "invalid_value", None),
    "family_mismatch": (400, "family_mismatch", "model"),
    "lora_not_found": (400, "lora_not_found", "lora_settings"),
    "lora_invalid": (400, "lora_invalid", "lora_settings"),
    "lora_incompatible": (400, "lora_incompatible", "lora_settings"),
    "civitai_auth_required": (400, "civitai_auth_required", "lora_settings"),
    "civitai_early_access": (400, "civitai_early_access", "lora_settings"),
    "civitai_not_found": (400, "civitai_not_found", "lora_settings"),
    "civitai_archived": (400, "civitai_archived", "lora_settings"),
    # Passing conditions on the far side: worth a retry.
    "civitai_rate_limited": (503, "civitai_rate_limited", "lora_settings"),
    "civitai_unavailable": (503, "civitai_unavailable", "lora_settings"),
    "download_failed": (503, "download_failed", "lora_settings"),
    # The preset's weights are missing: a server set-up problem, not an unknown model.
    "model_not_found": (500, "model_not_found", None),
}
_RETRY_AFTER_S = 10


class ApiError(Exception):
    """A failure answered in OpenAI's envelope."""

    def __init__(self, status: int, code: str, message: str, param: Optional[str] = None,
                 retry: Optional[bool] = None, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        # None = the SDK's default rule; 5xx defaults to "do not retry" (deterministic failures).
        self.retry = retry if retry is not None else (False if status >= 500 else None)
        self.retry_after = retry_after

    def body(self) -> dict:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry is not None:
            headers["x-should-retry"] = "true" if self.retry else "false"
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        return headers

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers())


def invalid(code: str, message: str, param: Optional[str] = None) -> ApiError:
    return ApiError(400, code, message, param)


def from_core(code: str, message: str, fix: str = "") -> ApiError:
    """The API error for a core ``PresetsError`` (or an engine ``execution_error``'s code)."""
    text = f"{message} Fix: {fix}" if fix else message
    if code == "interrupted":
        return ApiError(500, "interrupted", text or "The generation was interrupted.", retry=False)
    status, api_code, param = _CORE_CODES.get(code, (500, code or "internal_error", None))
    if status == 503:
        return ApiError(status, api_code, text, param, retry=True, retry_after=_RETRY_AFTER_S)
    return ApiError(status, api_code, text, param)


def from_validation(body: dict) -> ApiError:
    """``service.submit``'s 400 body (ComfyUI's validation error shape) → an API error. The
    graph is built by the API, so a node error is a request value the node refused."""
    error = body.get("error") or {}
    messages = []
    for node in (body.get("node_errors") or {}).values():
        for item in node.get("errors", []):
            messages.append(f"{item.get('message', '')}: {item.get('details', '')}".strip(": "))
    text = "; ".join(messages) or f"{error.get('message', 'Invalid request')}: {error.get('details', '')}".strip(": ")
    if error.get("type") == "server_shutting_down":
        return ApiError(503, "server_shutting_down", text, retry=True, retry_after=2)
    if error.get("type") == "prompt_id_exists":
        return ApiError(409, "duplicate_request", text, retry=False)
    return invalid("invalid_value", text)

