"""The configurations API over real HTTP on loopback (a bare aiohttp app with the route table)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from diffusers_presets.core.presets import registry
from diffusers_presets.runner.server.config_routes import config_routes

Body = Callable[[TestClient], Awaitable[Any]]
BASE = "/api/v1/models"


@web.middleware
async def pretend_remote(request: web.Request, handler):
    """Lets a test play a client on another machine (the real check reads request.remote)."""
    remote = request.headers.get("X-Test-Remote")
    return await handler(request.clone(remote=remote) if remote else request)


def serve(body: Body) -> Any:
    async def main() -> Any:
        app = web.Application(middlewares=[pretend_remote])
        app.add_routes(config_routes())
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture
def user_dir(host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RUNNER_ADMIN_KEY", raising=False)
    monkeypatch.setenv("PRESETS_DIR", str(tmp_path / "user"))
    return tmp_path / "user"


def enc(text: str) -> str:
    return quote(text, safe="")


def test_every_route(user_dir: Path) -> None:
    async def body(client: TestClient) -> None:
        made = await client.post(f"{BASE}/tiny/configurations",
                                 json={"base_model": "illustrious", "name": "soft", "steps": 12, "is_default": True})
        assert made.status == 201, await made.text()
        config = await made.json()
        assert (config["id"], config["model_id"], config["base_model"]) == ("sdxl/soft", "tiny", "illustrious")
        listed = await (await client.get(f"{BASE}/tiny/configurations")).json()
        assert "sdxl/soft" in [c["id"] for c in listed["configurations"]]
        default = await (await client.get(f"{BASE}/tiny/configurations/default")).json()
        assert default["id"] == "sdxl/soft"
        # hub repo ids contain a slash: URL-encoded
        repo_default = await client.get(f"{BASE}/{enc('someone/unknown-model')}/configurations/default?base_model=flux")
        assert (await repo_default.json())["id"] == "flux/dev"
        base = await client.post(f"{BASE}/configurations/base/zimage", json={"name": "plain", "steps": 9})
        assert base.status == 201 and (await base.json())["model_id"] is None
        assert [c["id"] for c in (await (await client.get(f"{BASE}/configurations/base/zimage")).json())["configurations"]] == ["zimage/plain"]
        one = await client.get(f"{BASE}/configurations/{enc('sdxl/soft')}")
        assert (await one.json())["steps"] == 12
        put = await client.put(f"{BASE}/configurations/{enc('sdxl/soft')}", json={"cfg_scale": 5})
        assert put.status == 200 and (await put.json())["cfg_scale"] == 5.0
        gone = await client.delete(f"{BASE}/configurations/{enc('sdxl/soft')}")
        assert (await gone.json()) == {"deleted": "sdxl/soft", "restored": None}
        assert (await client.get(f"{BASE}/configurations/{enc('sdxl/soft')}")).status == 404
        listing = await (await client.get(f"{BASE}?base_model=pony")).json()
        assert listing["schema"] == 1 and isinstance(listing["models"], list)

    serve(body)


@pytest.mark.parametrize("body, field", [
    ({"steps": "12"}, "steps"), ({"steps": 0}, "steps"), ({"steps": 10**30}, "steps"),
    ({"sampler": "ddim"}, "sampler"), ({"cfg_scale": [1]}, "cfg_scale"), ({"seed": 1.5}, "seed"),
])
def test_invalid_bodies_are_400_with_the_field(user_dir: Path, body: dict, field: str) -> None:
    async def run(client: TestClient) -> None:
        response = await client.put(f"{BASE}/configurations/{enc('flux/schnell')}", json=body)
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "preset_invalid" and error["field"] == field and error["fix"]
        not_json = await client.put(f"{BASE}/configurations/{enc('flux/schnell')}", data=b"{nope")
        assert not_json.status == 400

    serve(run)
    assert not (user_dir / "flux" / "schnell.yaml").exists()


@pytest.mark.parametrize("bad", ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "sdxl%2F..%2F..%2Fx"])
def test_ids_with_dots_or_absolute_paths(user_dir: Path, bad: str) -> None:
    async def run(client: TestClient) -> None:
        for method in ("GET", "PUT", "DELETE"):
            response = await client.request(method, f"{BASE}/configurations/{bad}", json={"steps": 3})
            assert response.status in (400, 404), (method, response.status)
        made = await client.post(f"{BASE}/tiny/configurations", json={"base_model": "sdxl", "id": unquote_once(bad)})
        assert made.status == 400 and (await made.json())["error"]["field"] == "id"

    serve(run)
    assert not list(user_dir.parent.rglob("passwd"))


def unquote_once(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def test_shipped_override_restore_and_conflict(user_dir: Path) -> None:
    async def run(client: TestClient) -> None:
        put = await client.put(f"{BASE}/configurations/{enc('zimage/turbo')}", json={"steps": 5})
        assert (await put.json())["overridden"] is True and registry().get("zimage/turbo").steps == 5
        deleted = await (await client.delete(f"{BASE}/configurations/{enc('zimage/turbo')}")).json()
        assert deleted["restored"]["steps"] == 8 and registry().get("zimage/turbo").steps == 8
        again = await client.delete(f"{BASE}/configurations/{enc('zimage/turbo')}")
        assert again.status == 403 and (await again.json())["error"]["code"] == "preset_read_only"
        twice = await client.post(f"{BASE}/tiny/configurations", json={"base_model": "zimage", "id": "zimage/turbo"})
        assert twice.status == 409

    serve(run)


def test_default_moves_between_base_configurations(user_dir: Path) -> None:
    async def run(client: TestClient) -> None:
        for name in ("a", "b"):
            made = await client.post(f"{BASE}/configurations/base/flux_dev", json={"name": name, "is_default": True})
            assert made.status == 201
        configs = (await (await client.get(f"{BASE}/configurations/base/flux")).json())["configurations"]
        assert {c["id"]: c["is_default"] for c in configs} == {"flux/a": False, "flux/b": True}
        assert registry().default_for("flux").id == "flux/b"

    serve(run)


def test_writes_only_from_loopback_or_with_the_admin_key(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def remote(client: TestClient) -> None:
        far = {"X-Test-Remote": "203.0.113.7"}
        refused = await client.put(f"{BASE}/configurations/{enc('flux/dev')}", json={"steps": 3}, headers=far)
        assert refused.status == 403
        assert (await client.get(f"{BASE}/configurations/{enc('flux/dev')}", headers=far)).status == 200  # reads open

    serve(remote)
    monkeypatch.setenv("RUNNER_ADMIN_KEY", "s3cret-key")

    async def keyed(client: TestClient) -> None:
        url = f"{BASE}/configurations/{enc('flux/dev')}"
        assert (await client.put(url, json={"steps": 3})).status == 401  # loopback is not enough now
        wrong = await client.put(url, json={"steps": 3}, headers={"Authorization": "Bearer s3cret-kez"})
        assert wrong.status == 401 and "s3cret" not in await wrong.text()
        ok = await client.put(url, json={"steps": 3},
                              headers={"Authorization": "Bearer s3cret-key", "X-Test-Remote": "203.0.113.7"})
        assert ok.status == 200

    serve(keyed)
    assert registry().get("flux/dev").steps == 3


def test_eight_concurrent_clients_and_a_running_preset_loader(user_dir: Path) -> None:
    from diffusers_presets.nodes.preset_loader import PresetLoader

    async def run(client: TestClient) -> None:
        async def one(i: int) -> None:
            made = await client.post(f"{BASE}/tiny/configurations", json={"base_model": "chroma", "name": f"c{i}"})
            assert made.status == 201, await made.text()
            put = await client.put(f"{BASE}/configurations/{enc(f'chroma/c{i}')}", json={"steps": 10 + i})
            assert put.status == 200

        await asyncio.gather(*(one(i) for i in range(8)))

    serve(run)
    choices = PresetLoader.INPUT_TYPES()["required"]["preset"][0]
    for i in range(8):
        assert f"chroma/c{i}" in choices and registry().get(f"chroma/c{i}").steps == 10 + i
