"""The frontend's own routes (runner/server/frontend.py) on a bare aiohttp app over loopback."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from diffusers_presets.runner.server.frontend import FRONTEND_PIN, find_web_root, frontend_routes, served_version
from diffusers_presets.runner.server.settings import ServerSettings


def serve(settings: ServerSettings, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
    """Run ``body`` against a real loopback server carrying only the frontend routes."""

    async def main() -> Any:
        app = web.Application()
        app.add_routes(frontend_routes(settings))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>canvas</title>")
    (root / "assets" / "app.js").write_text("export const x = 1;")
    return root


@pytest.fixture
def settings(tmp_path: Path, web_root: Path) -> ServerSettings:
    return ServerSettings(user_directory=tmp_path / "user", front_end_root=web_root)


def test_web_root_is_served_at_slash_without_spa_fallback(settings: ServerSettings) -> None:
    async def body(client: TestClient) -> None:
        index = await client.get("/")
        assert index.status == 200
        assert await index.text() == "<!doctype html><title>canvas</title>"
        assert index.headers["Content-Type"].startswith("text/html")
        assert index.headers["Cache-Control"] == "no-cache"
        script = await client.get("/assets/app.js")
        assert script.status == 200
        assert script.headers["Content-Type"] in ("text/javascript", "application/javascript")
        # Unknown paths are 404s, never index.html: the frontend parses /api answers as JSON.
        for path in ("/api/nothing_here", "/assets/missing.js", "/../settings.py"):
            response = await client.get(path)
            assert response.status == 404, path
            assert "canvas" not in await response.text()

    serve(settings, body)


def test_installed_frontend_is_found_by_default() -> None:
    root, reason = find_web_root(ServerSettings())
    assert reason == ""
    assert root is not None and root.parts[-2:] == ("comfyui_frontend_package", "static")
    assert (root / "index.html").is_file()


def packaged_root(folder: Path, version: str) -> Path:
    """A frontend laid out as ``pip install --target folder comfyui-frontend-package==version``."""
    root = folder / "comfyui_frontend_package" / "static"
    root.mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    info = folder / f"comfyui_frontend_package-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: comfyui_frontend_package\nVersion: {version}\n")
    return root


def test_served_version_is_the_served_frontends(tmp_path: Path, web_root: Path) -> None:
    """/system_stats' required_frontend_version: the frontend warns "outdated" when its own
    version is lower, so it must be the served one, not the one installed in the venv."""
    import importlib.metadata

    assert served_version(packaged_root(tmp_path / "old", "1.27.10")) == "1.27.10"
    assert served_version(packaged_root(tmp_path / "new", "1.60.0")) == "1.60.0"
    assert served_version(web_root) == "1.27.10"  # a build without metadata: the oldest verified
    installed = find_web_root(ServerSettings())[0]
    assert served_version(installed) == importlib.metadata.version("comfyui-frontend-package")


def test_no_installed_frontend_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    root, reason = find_web_root(ServerSettings())
    assert root is None and "not installed" in reason


def test_without_a_frontend_slash_explains_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    async def body(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 200
        text = await page.text()
        assert f"pip install {FRONTEND_PIN}" in text
        assert "has no index.html" in text
        assert (await client.get("/api/settings")).status == 200  # the API still answers

    serve(ServerSettings(user_directory=tmp_path / "user", front_end_root=empty), body)


def test_users_is_single_user_so_the_picker_is_skipped(settings: ServerSettings) -> None:
    async def body(client: TestClient) -> None:
        for path in ("/api/users", "/users"):
            response = await client.get(path)
            assert response.status == 200
            users = await response.json()
            assert isinstance(users, dict) and "users" not in users
        assert await (await client.get("/api/i18n")).json() == {}
        assert await (await client.get("/api/global_subgraphs")).json() == {}

    serve(settings, body)


def test_settings_persist_per_user_as_json(settings: ServerSettings) -> None:
    async def first(client: TestClient) -> None:
        assert await (await client.get("/api/settings")).json() == {}
        assert (await client.post("/api/settings/Comfy.InstalledVersion", json="1.58.1")).status == 200
        assert (await client.post("/api/settings", json={"Comfy.A": 1, "Comfy.B": [1, 2]})).status == 200
        assert (await client.post("/api/settings/Comfy.A", json={"nested": True})).status == 200
        assert await (await client.get("/api/settings/Comfy.A")).json() == {"nested": True}
        assert await (await client.get("/api/settings/Comfy.Unknown")).json() is None
        bad = await client.post("/api/settings/Comfy.A", data=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status == 400 and "error" in await bad.json()
        assert (await client.post("/api/settings", json=[1, 2])).status == 400
        nan = await client.post("/api/settings/Comfy.C", data=b"NaN", headers={"Content-Type": "application/json"})
        assert nan.status == 400 and "NaN" in (await nan.json())["error"]["message"]  # the file stays valid JSON

    serve(settings, first)
    stored = settings.user_directory / "default" / "comfy.settings.json"
    expected = {"Comfy.InstalledVersion": "1.58.1", "Comfy.A": {"nested": True}, "Comfy.B": [1, 2]}
    assert json.loads(stored.read_text()) == expected
    assert [p.name for p in stored.parent.iterdir()] == ["comfy.settings.json"]  # no temp file left

    async def second(client: TestClient) -> None:  # a restarted server reads them back
        assert await (await client.get("/api/settings")).json() == expected

    serve(settings, second)
    stored.write_text("{ broken")

    async def broken(client: TestClient) -> None:  # never a 5xx: the page would stay blank
        response = await client.get("/api/settings")
        assert response.status == 200 and await response.json() == {}

    serve(settings, broken)


def test_saved_workflows_live_under_the_user_folder(settings: ServerSettings) -> None:
    user = settings.user_directory / "default"
    workflow = json.dumps({"nodes": [], "links": []}).encode()

    async def body(client: TestClient) -> None:
        # Listing a folder that does not exist yet is a JSON 404, which the frontend reads as [].
        missing = await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true", "split": "false", "full_info": "true"})
        assert missing.status == 404 and "error" in await missing.json()

        saved = await client.post("/api/userdata/workflows%2Fmy%20flow.json?overwrite=false&full_info=true", data=workflow)
        assert saved.status == 200
        info = await saved.json()
        assert info["path"] == "workflows/my flow.json" and info["size"] == len(workflow)
        assert isinstance(info["modified"], int) and isinstance(info["created"], int)
        assert (user / "workflows" / "my flow.json").read_bytes() == workflow
        again = await client.post("/api/userdata/workflows%2Fmy%20flow.json?overwrite=false", data=b"{}")
        assert again.status == 409
        plain = await client.post("/api/userdata/workflows%2Fsub%2Fb.json", data=b"{}")
        assert await plain.json() == "workflows/sub/b.json"

        listing = await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true", "split": "false", "full_info": "true"})
        assert [entry["path"] for entry in await listing.json()] == ["my flow.json", "sub/b.json"]
        flat = await client.get("/api/userdata", params={"dir": "workflows/"})
        assert await flat.json() == ["my flow.json"]
        split = await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true", "split": "true"})
        assert await split.json() == [["my flow.json", "my flow.json"], ["sub/b.json", "sub", "b.json"]]

        loaded = await client.get("/api/userdata/workflows%2Fmy%20flow.json")
        assert loaded.status == 200 and await loaded.read() == workflow
        assert loaded.headers["X-Content-Type-Options"] == "nosniff"
        assert (await client.get("/api/userdata/workflows%2Fnope.json")).status == 404
        assert (await client.get("/api/userdata/user.css")).status == 404

        moved = await client.post("/api/userdata/workflows%2Fmy%20flow.json/move/workflows%2Frenamed.json?full_info=true")
        assert moved.status == 200 and (await moved.json())["path"] == "workflows/renamed.json"
        assert not (user / "workflows" / "my flow.json").exists()
        blocked = await client.post("/api/userdata/workflows%2Frenamed.json/move/workflows%2Fsub%2Fb.json?overwrite=false")
        assert blocked.status == 409
        assert (await client.delete("/api/userdata/workflows%2Frenamed.json")).status == 204
        assert (await client.delete("/api/userdata/workflows%2Frenamed.json")).status == 404

        tree = await (await client.get("/api/v2/userdata")).json()
        assert [(e["name"], e["type"]) for e in tree] == [("sub", "directory"), ("workflows", "directory"), ("b.json", "file")]
        assert tree[-1]["path"] == "workflows/sub/b.json" and tree[-1]["size"] == 2
        assert (await client.get("/api/v2/userdata", params={"path": "nope"})).status == 404

    serve(settings, body)
    assert not [p for p in user.rglob(".*")]  # no temporary file left behind


def test_paths_leaving_the_user_folder_are_refused(settings: ServerSettings, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.json").write_text('{"token": "x"}')
    user = settings.user_directory / "default"
    user.mkdir(parents=True)
    os.symlink(secret, user / "escape")
    os.symlink(secret / "key.json", user / "key-link.json")
    (user / "ok.json").write_text("{}")

    async def body(client: TestClient) -> None:
        for path in ("..%2F..%2Fsecret%2Fkey.json", "%2Fetc%2Fpasswd", "workflows%2F..%2F..%2Fx", "a%00b"):
            for response in (
                await client.get(f"/api/userdata/{path}"),
                await client.post(f"/api/userdata/{path}", data=b"{}"),
                await client.delete(f"/api/userdata/{path}"),
                await client.post(f"/api/userdata/ok.json/move/{path}"),
            ):
                assert response.status == 400, (path, response.method)
                assert "error" in await response.json()
        for path in ("escape%2Fkey.json", "key-link.json"):
            response = await client.get(f"/api/userdata/{path}")
            assert response.status == 403 and "error" in await response.json()
            assert (await client.post(f"/api/userdata/{path}", data=b"{}")).status == 403
        assert (await client.get("/api/userdata", params={"dir": "escape"})).status == 403
        assert (await client.get("/api/userdata", params={"dir": ".."})).status == 400
        assert (await client.get("/api/userdata", params={"dir": "/etc"})).status == 400
        assert (await client.get("/api/userdata")).status == 400
        assert (await client.get("/api/v2/userdata", params={"path": "../.."})).status == 400
        # Listings leave out what points outside.
        listing = await client.get("/api/userdata", params={"dir": ".", "recurse": "true"})
        assert await listing.json() == ["ok.json"]
        names = [entry["name"] for entry in await (await client.get("/api/v2/userdata")).json()]
        assert names == ["ok.json"]

    serve(settings, body)
    assert (secret / "key.json").read_text() == '{"token": "x"}'
    assert sorted(p.name for p in secret.iterdir()) == ["key.json"]
