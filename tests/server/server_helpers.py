"""Server test helpers: plain HTTP through urllib, a real WebSocket through websocket-client,
the settings of a server in a temporary folder."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Optional

import websocket

from diffusers_presets.runner import core_nodes
from diffusers_presets.runner.server.settings import ServerSettings


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: Any = None, headers: Optional[dict] = None, raw: Optional[bytes] = None,
         timeout: float = 30) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    """(body, content type) for a multipart form; a (filename, bytes) value is a file."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Socket:
    """A websocket client that keeps every JSON message and binary frame it read."""

    def __init__(self, base_url: str, client_id: Optional[str] = None, timeout: float = 60) -> None:
        query = f"?clientId={client_id}" if client_id else ""
        self.ws = websocket.create_connection(base_url.replace("http://", "ws://") + "/ws" + query, timeout=timeout)
        self.messages: list[dict] = []
        self.frames: list[bytes] = []
        first = self.next()
        assert first["type"] == "status"
        self.sid = first["data"]["sid"]

    def next(self) -> dict:
        while True:
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self.frames.append(data)
                continue
            message = json.loads(data)
            self.messages.append(message)
            return message

    def until_done(self, prompt_id: str) -> list[dict]:
        """Messages up to ``executing`` with ``node: null`` for ``prompt_id`` (ComfyUI's
        documented "done" signal), this prompt's only."""
        out = []
        while True:
            message = self.next()
            data = message["data"]
            if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                out.append(message)
                if message["type"] == "executing" and data["node"] is None:
                    return out

    def send(self, payload: dict) -> None:
        self.ws.send(json.dumps(payload))

    def close(self) -> None:
        self.ws.close()


def make_settings(root: Path, **overrides: Any) -> ServerSettings:
    settings = ServerSettings(
        port=0,
        output_dir=root / "output",
        input_dir=root / "input",
        temp_dir=root / "temp",
        models_dir=root / "models",
        user_directory=root / "user",
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def stub_registry() -> dict[str, type]:
    """The runner's nodes plus the engine's stub nodes (tests/runner/engine_stubs.py)."""
    from engine_stubs import STUB_NODES

    return {**core_nodes.node_registry(), **STUB_NODES}
