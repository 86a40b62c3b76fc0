"""A small Chrome DevTools Protocol driver over aiohttp's websocket client, for the canvas test.

It starts Debian's ``chromium`` headless with a throwaway profile, opens one page and keeps
every console message, uncaught exception and HTTP response the page produced, so a test can
assert on them. No playwright, no browser download.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
    "--remote-debugging-port=0",
)


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    pass


class Page:
    """One attached page target: commands, and the events it has sent so far."""

    def __init__(self, browser: "Browser", session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of ``expression`` (promises awaited); a thrown error raises CDPError."""
        reply = await asyncio.wait_for(
            self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True),
            timeout,
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            message = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"{expression[:80]!r} threw: {message}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, interval: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy; its value, or TimeoutError with the last one."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")

    async def screenshot(self, path: Path) -> Path:
        reply = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(reply["data"]))
        return path

    def named(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.events if name == method]

    def console_errors(self, ignore: Callable[[str], bool] = lambda text: False) -> list[str]:
        """Errors the page logged or threw, as text, except those ``ignore`` accepts."""
        found = []
        for params in self.named("Runtime.consoleAPICalled"):
            if params["type"] in ("error", "assert"):
                found.append(" ".join(_arg_text(arg) for arg in params["args"]))
        for params in self.named("Runtime.exceptionThrown"):
            details = params["exceptionDetails"]
            found.append(details.get("exception", {}).get("description") or details.get("text", ""))
        for params in self.named("Log.entryAdded"):
            entry = params["entry"]
            if entry["level"] == "error":
                found.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        return [text for text in found if not ignore(text)]

    def responses(self) -> list[tuple[str, int]]:
        return [(p["response"]["url"], p["response"]["status"]) for p in self.named("Network.responseReceived")]


def _arg_text(arg: dict[str, Any]) -> str:
    if "value" in arg:
        return str(arg["value"])
    return arg.get("description", arg.get("type", ""))


class Browser:
    """A headless chromium process and its DevTools websocket (one connection, flat sessions)."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable = executable
        self.profile = profile
        self.process: Optional[subprocess.Popen] = None
        self.session: Optional[aiohttp.ClientSession] = None
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self.pages: dict[str, Page] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader: Optional[asyncio.Task] = None

    async def __aenter__(self) -> "Browser":
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a reused profile keeps the last run's port
        log = open(self.profile.parent / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        try:
            await self._connect(port_file)
        except BaseException:
            await self.__aexit__()
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def _connect(self, port_file: Path) -> None:
        # With port 0 chromium picks a free port and writes it to DevToolsActivePort.
        assert self.process is not None
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise CDPError(f"chromium did not start; see {self.profile.parent / 'chromium.log'}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)

    async def __aexit__(self, *exc: Any) -> None:
        if self._reader:
            self._reader.cancel()
        if self.ws:
            await self.ws.close()
        if self.session:
            await self.session.close()
        if self.process:
            # The whole group: chromium's zygote and renderers outlive a lone main process.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future and not future.done():
                    if "error" in data:
                        future.set_exception(CDPError(f"{data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
            elif data.get("sessionId") in self.pages:
                self.pages[data["sessionId"]].events.append((data["method"], data.get("params", {})))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CDPError("the DevTools connection closed"))

    async def send(self, method: str, params: Optional[dict[str, Any]] = None, session_id: Optional[str] = None) -> dict[str, Any]:
        assert self.ws is not None
        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 60)

    async def new_page(self) -> Page:
        """A blank page with console, log, runtime and network events on, the cache off."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self.pages[page.session_id] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        await page.send("Network.setCacheDisabled", cacheDisabled=True)
        return page
