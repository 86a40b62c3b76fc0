"""WebSocket clients and message delivery (contract §4.6).

Every socket has its own outgoing queue and writer task, so one slow client never delays the
others and messages reach each client in the order they were sent. Messages are addressed by
``sid`` (the ``clientId`` a prompt was queued with); ``sid=None`` broadcasts. A client that
reconnects with the same ``clientId`` receives what is sent to that id from then on.

Other threads (the worker, custom nodes) call :meth:`EventHub.send_sync`; everything else runs
on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

# A client this far behind is disconnected rather than letting its backlog grow without bound.
MAX_BACKLOG = 10000
# Preview frames are dropped (not queued) for a client this far behind.
PREVIEW_BACKLOG = 32

Listener = Callable[[str, dict, Optional[str]], None]


@dataclass
class Client:
    sid: str
    ws: web.WebSocketResponse
    features: dict = field(default_factory=dict)
    backlog: deque = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, message: Union[str, bytes]) -> bool:
        if len(self.backlog) >= MAX_BACKLOG:
            return False
        self.backlog.append(message)
        self.wakeup.set()
        return True

    async def write_loop(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.backlog:
                message = self.backlog.popleft()
                if self.ws.closed:
                    return
                try:
                    if isinstance(message, bytes):
                        await self.ws.send_bytes(message)
                    else:
                        await self.ws.send_str(message)
                except ConnectionResetError:  # the peer vanished mid-write: handle() cleans up
                    return


class EventHub:
    """The connected clients and the one way to send them messages."""

    def __init__(self, server_features: dict) -> None:
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.clients: dict[str, Client] = {}
        self.server_features = server_features
        # Called on the loop for every message sent (event, data, sid): the hook for other
        # APIs (an OpenAI-style endpoint) that follow prompts without a socket.
        self.listeners: list[Listener] = []
        # Sent to a socket right after it connects (the initial status).
        self.on_connect: Optional[Callable[[str], list[tuple[str, dict]]]] = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # --- sending ------------------------------------------------------------------------------------
    def send(self, event: str, data: Any, sid: Optional[str] = None) -> None:
        """Send a JSON message to ``sid`` (or everyone when None). Loop thread only."""
        for listener in self.listeners:
            listener(event, data, sid)
        if not self.clients:
            return
        text = json.dumps({"type": event, "data": data}, default=str)
        if sid is None:
            for client in list(self.clients.values()):
                self._push(client, text)
        else:
            client = self.clients.get(sid)
            if client is not None:
                self._push(client, text)

    def send_preview(self, with_metadata: bytes, plain: bytes, sid: Optional[str] = None) -> None:
        """A preview frame: type 4 to clients that announced ``supports_preview_metadata``,
        type 1 to the others. Dropped for a client that is behind. Loop thread only."""
        targets = list(self.clients.values()) if sid is None else [c for c in [self.clients.get(sid)] if c]
        for client in targets:
            if len(client.backlog) < PREVIEW_BACKLOG:
                self._push(client, with_metadata if client.features.get("supports_preview_metadata") else plain)

    def send_sync(self, event: str, data: Any, sid: Optional[str] = None) -> None:
        """Thread-safe :meth:`send` (ComfyUI's ``PromptServer.send_sync``)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.send, event, data, sid)

    def call_soon(self, func: Callable, *args: Any) -> None:
        """Run ``func(*args)`` on the loop, from any thread."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(func, *args)

    def _push(self, client: Client, message: Union[str, bytes]) -> None:
        if not client.push(message):
            log.warning("websocket client %s is %d messages behind; disconnecting it", client.sid, MAX_BACKLOG)
            self.clients.pop(client.sid, None)
            asyncio.ensure_future(client.ws.close())

    # --- the /ws route ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20, timeout=2)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        previous = self.clients.pop(sid, None)
        if previous is not None:
            await previous.ws.close()
        client = Client(sid, ws)
        self.clients[sid] = client
        writer = asyncio.ensure_future(client.write_loop())
        try:
            for event, data in self.on_connect(sid) if self.on_connect else []:
                self._push(client, json.dumps({"type": event, "data": data}))
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._client_message(client, message.data)
                elif message.type == WSMsgType.ERROR:
                    log.debug("websocket %s closed with %s", sid, ws.exception())
        finally:
            if self.clients.get(sid) is client:
                del self.clients[sid]
            writer.cancel()
        return ws

    def _client_message(self, client: Client, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return  # ComfyUI ignores what it does not understand
        if isinstance(message, dict) and message.get("type") == "feature_flags" and isinstance(message.get("data"), dict):
            client.features = message["data"]
            self._push(client, json.dumps({"type": "feature_flags", "data": self.server_features}))

    async def close_all(self) -> None:
        for client in list(self.clients.values()):
            await client.ws.close(code=1001, message=b"server shutdown")
        self.clients.clear()
