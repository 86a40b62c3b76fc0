"""A fake Civitai on 127.0.0.1 that speaks the real API shapes, for tests, benchmarks and CI.

It serves ``/api/v1/model-versions/{id}``, ``/api/v1/models/{id}`` and
``/api/download/models/{versionId}`` (a 307 to a signed ``/storage/...`` URL, like Civitai),
plus ``/files/<name>`` (a plain file server) and Hugging Face style
``/<owner>/<repo>/resolve/<rev>/<file>`` URLs (with the headers ``huggingface_hub`` reads). Faults are scripted per version with
:class:`Faults`. Every request is recorded (method, path with query, headers) so tests can
check where the API key went.

Run alone: ``python tests/fake_civitai.py FILE.safetensors`` serves one LoRA as
``urn:air:sdxl:lora:civitai:1001@2001`` (trigger word "tiny style") and prints the base URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

from aiohttp import web

KEY = "test-key-5f1c0e9a7b"  # the only key the fake accepts


@dataclass
class Faults:
    """What goes wrong for one model version. Lists are consumed one request at a time."""

    require_key: bool = False  # 401 without `Authorization: Bearer KEY`
    early_access: Optional[str] = None  # deadline; 403 Early Access on download
    archived: bool = False  # 410 on download, no files in metadata
    download_statuses: list[int] = field(default_factory=list)  # e.g. [429] or [500, 500]
    api_statuses: list[int] = field(default_factory=list)  # for /model-versions
    cut_at: list[int] = field(default_factory=list)  # storage responses cut after these byte offsets
    wrong_hash: bool = False  # metadata lists another SHA256
    html: bool = False  # storage answers a 200 HTML login page
    stall_after: Optional[int] = None  # storage sends this many bytes, then nothing
    ignore_range: bool = False
    content_disposition: Optional[str] = None  # filename sent by storage
    retry_after: Optional[str] = None  # Retry-After header on 429


@dataclass
class FakeFile:
    id: int
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest().upper()


@dataclass
class FakeVersion:
    id: int
    model_id: int
    model_name: str
    model_type: str
    base_model: str
    trained_words: list[str]
    files: list[FakeFile]
    faults: Faults = field(default_factory=Faults)
    ecosystem: str = "sdxl"


class FakeCivitai:
    def __init__(self, rate: Optional[float] = None) -> None:
        self.rate = rate  # bytes per second for file bodies (a WAN-like link); None = as fast as possible
        self.versions: dict[int, FakeVersion] = {}
        self.models: dict[int, list[int]] = {}  # model id -> version ids, default first
        self.plain_files: dict[str, bytes] = {}  # /files/<name> and HF resolve paths
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.storage_bytes = 0  # bytes of file bodies sent (downloads and plain files)
        self.downloads: dict[int, int] = {}  # version id -> /api/download calls
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    # -- content -------------------------------------------------------------------------------
    def add_lora(self, model_id: int, version_id: int, data: bytes, *, name: str = "style.safetensors",
                 base_model: str = "SDXL 1.0", trained_words: Optional[list[str]] = None,
                 model_type: str = "LORA", model_name: str = "Test Style", faults: Optional[Faults] = None,
                 ecosystem: str = "sdxl", file_id: Optional[int] = None, default: bool = True) -> FakeVersion:
        version = FakeVersion(version_id, model_id, model_name, model_type, base_model,
                              list(trained_words or []), [FakeFile(file_id or version_id * 10, name, data)],
                              faults or Faults(), ecosystem)
        self.versions[version_id] = version
        ids = self.models.setdefault(model_id, [])
        ids.insert(0, version_id) if default else ids.append(version_id)
        return version

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def air(self, version_id: int) -> str:
        version = self.versions[version_id]
        return f"urn:air:{version.ecosystem}:lora:civitai:{version.model_id}@{version_id}"

    # -- API shapes ----------------------------------------------------------------------------
    def _file_json(self, version: FakeVersion, item: FakeFile, primary: bool) -> dict:
        sha = item.sha256 if not version.faults.wrong_hash else "0" * 64
        query = "" if primary else f"?type=Model&format=SafeTensor&fileId={item.id}"
        return {
            "id": item.id, "sizeKB": len(item.data) / 1024, "name": item.name, "type": "Model",
            "pickleScanResult": "Success", "pickleScanMessage": "No Pickle imports", "virusScanResult": "Success",
            "virusScanMessage": None, "scannedAt": "2026-01-02T00:00:00.000Z",
            "metadata": {"format": "SafeTensor", "size": None, "fp": "fp16"},
            "hashes": {"AutoV2": sha[:10], "SHA256": sha, "CRC32": "00000000", "BLAKE3": "0" * 64},
            "primary": primary, "downloadUrl": f"{self.base_url}/api/download/models/{version.id}{query}",
        }

    def _version_json(self, version: FakeVersion, with_model: bool = True) -> dict:
        files = [] if version.faults.archived else [
            self._file_json(version, item, index == 0) for index, item in enumerate(version.files)]
        body = {
            "id": version.id, "modelId": version.model_id, "name": "v1.0", "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z", "status": "Published", "publishedAt": "2026-01-01T00:00:00.000Z",
            "trainedWords": version.trained_words, "trainingStatus": None, "trainingDetails": None,
            "baseModel": version.base_model, "baseModelType": "Standard",
            "earlyAccessEndsAt": version.faults.early_access, "earlyAccessConfig": None, "description": None,
            "uploadType": "Created", "usageControl": "Download",
            "air": f"urn:air:{version.ecosystem}:{_AIR_TYPES.get(version.model_type, 'lora')}:civitai:"
                   f"{version.model_id}@{version.id}",
            "stats": {"downloadCount": 1, "thumbsUpCount": 1}, "files": files, "images": [],
            "downloadUrl": f"{self.base_url}/api/download/models/{version.id}",
        }
        if with_model:
            body["model"] = {"name": version.model_name, "type": version.model_type, "nsfw": False, "poi": False}
        return body

    # -- handlers ------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler):  # noqa: ANN001, ANN202
        self.requests.append((request.method, str(request.rel_url), dict(request.headers)))
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {KEY}"

    async def _model_version(self, request: web.Request) -> web.Response:
        version = self.versions.get(int(request.match_info["id"]))
        if version is None:
            return web.json_response({"error": "Model not found"}, status=404)
        if version.faults.api_statuses:
            status = version.faults.api_statuses.pop(0)
            return web.json_response({"error": f"status {status}"}, status=status)
        return web.json_response(self._version_json(version))

    async def _model(self, request: web.Request) -> web.Response:
        model_id = int(request.match_info["id"])
        if model_id not in self.models:
            return web.json_response({"error": f"No model with id {model_id}"}, status=404)
        versions = [self.versions[v] for v in self.models[model_id]]
        first = versions[0]
        return web.json_response({
            "id": model_id, "name": first.model_name, "description": "", "type": first.model_type, "poi": False,
            "nsfw": False, "allowNoCredit": True, "allowCommercialUse": ["Image"], "allowDerivatives": True,
            "allowDifferentLicense": True, "tags": [], "creator": {"username": "tester", "image": None},
            "stats": {}, "modelVersions": [self._version_json(v, with_model=False) for v in versions],
        })

    async def _download(self, request: web.Request) -> web.StreamResponse:
        version = self.versions.get(int(request.match_info["id"]))
        if version is None:
            return web.Response(text="File not found", status=404)
        self.downloads[version.id] = self.downloads.get(version.id, 0) + 1
        faults = version.faults
        if faults.download_statuses:
            status = faults.download_statuses.pop(0)
            headers = {"Retry-After": faults.retry_after} if status == 429 and faults.retry_after else None
            return web.json_response({"error": "We've noticed an unusual amount of downloading"} if status == 429
                                     else {"error": "Error getting file"}, status=status, headers=headers)
        if faults.require_key and not self._authorized(request):
            return web.json_response({"error": "Unauthorized", "message": "The creator of this asset requires you "
                                      "to be logged in to download it"}, status=401)
        if faults.early_access:
            return web.json_response({"error": "Early Access", "deadline": faults.early_access,
                                      "message": "This asset is in Early Access."}, status=403)
        if faults.archived:
            return web.Response(text="Model archived, not available for download", status=410)
        file_id = request.query.get("fileId")
        item = next((f for f in version.files if str(f.id) == file_id), None) if file_id else version.files[0]
        if item is None:
            return web.Response(text="File not found", status=404)
        # Like Civitai: a signed, short-lived URL on another host (localhost, not 127.0.0.1).
        raise web.HTTPTemporaryRedirect(f"http://localhost:{self.port}/storage/{version.id}/{item.id}/"
                                        f"{quote(item.name, safe='')}?X-Amz-Signature=abc123")

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        version = self.versions[int(request.match_info["version"])]
        item = next(f for f in version.files if f.id == int(request.match_info["file"]))
        faults = version.faults
        if faults.html:
            return web.Response(text="<!DOCTYPE html><html><body>Please log in</body></html>",
                                content_type="text/html")
        disposition = faults.content_disposition or item.name
        return await self._send(request, item.data, faults, {"Content-Disposition": f'attachment; filename="{disposition}"'})

    async def _plain(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        data = self.plain_files.get(path)
        hub = _HUB_FILE.match(path)
        if data is None:
            # The Hub says which kind of 404 it is; huggingface_hub maps it to its error classes.
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": HUB_COMMIT} if hub else None
            return web.Response(text="not found", status=404, headers=headers)
        headers = {}
        if hub:  # what huggingface_hub reads from the Hub's answer: commit, LFS etag (= sha256), size
            sha = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": HUB_COMMIT, "ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"',
                       "X-Linked-Size": str(len(data))}
            if request.method == "HEAD":
                return web.Response(status=200, headers=headers)
        return await self._send(request, data, Faults(), headers)

    async def _send(self, request: web.Request, data: bytes, faults: Faults,
                    headers: dict[str, str]) -> web.StreamResponse:
        start = 0
        range_header = request.headers.get("Range", "")
        if range_header.startswith("bytes=") and not faults.ignore_range:
            start = int(range_header[6:].split("-")[0])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        status = 206 if start else 200
        response = web.StreamResponse(status=status, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(len(data) - start), **headers,
            **({"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {})})
        await response.prepare(request)
        end = len(data)
        cut = next((c for c in faults.cut_at if c > start), None)
        if cut is not None:
            faults.cut_at.remove(cut)
            end = cut
        if faults.stall_after is not None:
            end = min(end, start + faults.stall_after)
        view = memoryview(data)
        position = start
        began = time.monotonic()
        while position < end:
            step = min(1 << 20, end - position)
            await response.write(view[position:position + step])
            self.storage_bytes += step
            position += step
            if self.rate:  # pace the body to the link rate
                await asyncio.sleep(max(0.0, (position - start) / self.rate - (time.monotonic() - began)))
        if faults.stall_after is not None:
            await asyncio.sleep(3600)
        if end < len(data):
            request.transport.abort()  # a cut connection: fewer bytes than Content-Length
            return response
        await response.write_eof()
        return response

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FakeCivitai":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application(middlewares=[self._record])
            app.router.add_get("/api/v1/model-versions/{id:\\d+}", self._model_version)
            app.router.add_get("/api/v1/models/{id:\\d+}", self._model)
            app.router.add_get("/api/download/models/{id:\\d+}", self._download)
            app.router.add_get("/storage/{version:\\d+}/{file:\\d+}/{name:.*}", self._storage)
            app.router.add_get("/{path:.*}", self._plain)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-civitai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
        try:
            future.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "FakeCivitai":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def key_leaks(self) -> list[str]:
        """Requests where the key went anywhere but an API/download Authorization header."""
        leaks = []
        for method, path, headers in self.requests:
            if KEY in path:
                leaks.append(f"{method} {path}: key in the URL")
            if path.startswith("/storage/") and "Authorization" in headers:
                leaks.append(f"{method} {path}: key sent to the storage host")
        return leaks


_AIR_TYPES = {"LORA": "lora", "LoCon": "lycoris", "DoRA": "dora"}
_HUB_FILE = re.compile(r"^[^/]+/[^/]+/resolve/[^/]+/.+")
HUB_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"  # the commit the fake Hub reports


def safetensors_bytes(size: int, seed: int = 0) -> bytes:
    """A valid safetensors payload of about ``size`` bytes (one random uint8 tensor)."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save({"lora_unet_blob.lora_down.weight": rng.integers(0, 255, size=max(size - 128, 1), dtype=np.uint8)})


# ---- pytest fixtures (imported by the conftest of tests/civitai and tests/lora) ---------------
import pytest  # noqa: E402


@pytest.fixture
def fake_civitai():
    with FakeCivitai() as server:
        yield server


@pytest.fixture
def civitai_env(fake_civitai, host, monkeypatch, tmp_path):
    """The fake server as CIVITAI_BASE_URL, no key anywhere, fast retries and a short stall
    timeout. Yields the server."""
    from diffusers_presets.core.civitai import download, transport

    monkeypatch.setenv("CIVITAI_BASE_URL", fake_civitai.base_url)
    for name in ("CIVITAI_API_KEY", "CIVITAI_API_TOKEN", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIVITAI_API_KEY_FILE", str(tmp_path / "no-key-file"))
    monkeypatch.setattr(transport, "BACKOFF", transport.Backoff(attempts=4, base=0.01, cap=0.05))
    monkeypatch.setattr(download, "BACKOFF", transport.BACKOFF)
    monkeypatch.setattr(download, "STALL_TIMEOUT_S", 1.0)
    yield fake_civitai


MODEL, VERSION = 1001, 2001  # what `python tests/fake_civitai.py FILE` serves


def main() -> None:
    import sys
    import time
    from pathlib import Path

    data = Path(sys.argv[1]).read_bytes()
    rate = float(sys.argv[2]) * 1e6 if len(sys.argv) > 2 else None  # optional link rate in MB/s
    server = FakeCivitai(rate).start()
    server.add_lora(MODEL, VERSION, data, name=Path(sys.argv[1]).name, trained_words=["tiny style"])
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
