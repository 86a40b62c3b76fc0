"""Uploads, /view, and bad input: every refusal is a 4xx with a JSON body, never a 500."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image
from server_helpers import http, multipart, stub_registry


def _png(color: tuple, size: int = 8, alpha: int = 255) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (size, size), (*color, alpha)).save(out, format="PNG")
    return out.getvalue()


def _upload(server, route: str = "/upload/image", **fields) -> tuple:
    body, content_type = multipart(fields)
    reply = http("POST", server.url + route, raw=body, headers={"Content-Type": content_type})
    return reply.status, reply.json()


@pytest.fixture
def server(make_server):
    return make_server(stub_registry())


def _refused(reply, status: int) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert "error" in reply.json() and "Traceback" not in reply.body.decode()


def test_upload_names_collisions_and_view(server, tmp_path: Path) -> None:
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    assert _upload(server, image=("a.png", red)) == (200, {"name": "a.png", "subfolder": "", "type": "input"})
    assert _upload(server, image=("a.png", red))[1]["name"] == "a.png"  # identical bytes: same name
    assert _upload(server, image=("a.png", blue))[1]["name"] == "a (1).png"
    assert _upload(server, image=("a.png", _png((0, 255, 0))))[1]["name"] == "a (2).png"
    assert _upload(server, image=("a.png", blue), overwrite="true")[1]["name"] == "a.png"
    assert (tmp_path / "input" / "a.png").read_bytes() == blue
    status, body = _upload(server, image=("b.png", red), subfolder="masks/x", type="temp")
    assert (status, body) == (200, {"name": "b.png", "subfolder": "masks/x", "type": "temp"})
    reply = http("GET", server.url + "/view?filename=b.png&subfolder=masks/x&type=temp")
    assert reply.status == 200 and reply.body == red and reply.headers["Content-Type"] == "image/png"
    assert 'filename="b.png"' in reply.headers["Content-Disposition"]
    reply = http("GET", server.url + "/api/view?filename=a.png&type=input&preview=webp;90")
    assert reply.headers["Content-Type"] == "image/webp" and Image.open(io.BytesIO(reply.body)).format == "WEBP"
    reply = http("GET", server.url + "/view?filename=a.png&type=input&preview=jpeg;50")
    assert Image.open(io.BytesIO(reply.body)).format == "JPEG"
    reply = http("GET", server.url + "/view?filename=a.png&type=input&channel=rgb")
    assert Image.open(io.BytesIO(reply.body)).mode == "RGB"
    reply = http("GET", server.url + "/view?filename=a.png%20%5Binput%5D&channel=a")
    assert Image.open(io.BytesIO(reply.body)).getchannel("A").getextrema() == (255, 255)
    # the uploaded file is now a LoadImage option
    options = http("GET", server.url + "/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
    assert {"a.png", "a (1).png"} <= set(options)


def test_mask_upload_pastes_alpha(server, tmp_path: Path) -> None:
    _upload(server, image=("photo.png", _png((10, 20, 30))))
    status, body = _upload(server, "/upload/mask", image=("mask.png", _png((0, 0, 0), alpha=0)),
                           original_ref='{"filename": "photo.png", "subfolder": "", "type": "input"}')
    assert status == 200
    result = Image.open(tmp_path / "input" / body["name"])
    assert result.getpixel((0, 0)) == (10, 20, 30, 0)
    status, body = _upload(server, "/upload/mask", image=("mask.png", _png((0, 0, 0))), original_ref="not json")
    assert status == 400


def test_view_and_upload_refuse_paths_out_of_their_folders(server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png((1, 2, 3)))
    (tmp_path / "output").mkdir(exist_ok=True)
    os.symlink(secret, tmp_path / "output" / "link.png")
    os.symlink(tmp_path, tmp_path / "output" / "escape")
    for query, status in [
        ("filename=../secret.png", 400),
        ("filename=/etc/passwd", 400),
        ("filename=secret.png&subfolder=..", 403),
        ("filename=secret.png&subfolder=/tmp", 403),
        ("filename=secret.png&subfolder=escape", 403),
        ("filename=link.png", 403),
        ("filename=x.png&type=elsewhere", 400),
        ("filename=missing.png", 404),
        ("subfolder=", 404),
    ]:
        _refused(http("GET", f"{server.url}/view?{query}"), status)
    for fields in [
        {"image": ("../evil.png", b"x")},
        {"image": ("ok.png", b"x"), "subfolder": "../../"},
        {"image": ("ok.png", b"x"), "subfolder": "/tmp"},
        {"image": ("ok.png", b"x"), "subfolder": "escape", "type": "output"},
        {"image": ("", b"x")},
        {"notimage": "text"},
    ]:
        body, content_type = multipart(fields)
        _refused(http("POST", server.url + "/upload/image", raw=body, headers={"Content-Type": content_type}), 400)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "ok.png").exists()
    # an absolute name keeps only its last part (aiohttp's form parser drops the folders)
    status, body = _upload(server, image=("/abs.png", b"x"))
    assert status == 200 and body["name"] == "abs.png" and (tmp_path / "input" / "abs.png").is_file()
    _refused(http("POST", server.url + "/upload/image", {"image": "x"}), 415)


def test_bad_requests_are_json_4xx(server) -> None:
    url = server.url
    _refused(http("POST", url + "/prompt", raw=b"{not json", headers={"Content-Type": "application/json"}), 400)
    _refused(http("POST", url + "/prompt", raw=b"\xff\xfe", headers={"Content-Type": "text/plain"}), 400)
    _refused(http("POST", url + "/prompt", [1, 2]), 400)
    _refused(http("POST", url + "/prompt", {"prompt": "text"}), 400)
    _refused(http("POST", url + "/prompt", {"prompt": {"1": 5}}), 400)
    _refused(http("POST", url + "/prompt", {"prompt": {}, "extra_data": []}), 400)
    _refused(http("POST", url + "/prompt", {"prompt": {}, "prompt_id": "not-a-uuid"}), 400)
    _refused(http("POST", url + "/prompt", {"prompt": {}, "number": "first"}), 400)
    _refused(http("POST", url + "/queue", {"delete": "abc"}), 400)
    _refused(http("POST", url + "/history", {"delete": 5}), 400)
    _refused(http("POST", url + "/interrupt", raw=b"[", headers={"Content-Type": "application/json"}), 400)
    _refused(http("GET", url + "/history?max_items=many"), 400)
    # Integers SQLite cannot bind, and a negative page for /api/jobs.
    _refused(http("GET", url + "/history?max_items=" + "9" * 30), 400)
    _refused(http("GET", url + "/api/jobs?limit=" + "9" * 30), 400)
    _refused(http("GET", url + "/api/jobs?offset=-5"), 400)
    # A multipart part whose header aiohttp cannot parse.
    broken = b'--B\r\nContent-Disposition: form-data; name="image"; filename="a\x00b"\r\n\r\nx\r\n--B--\r\n'
    _refused(http("POST", url + "/upload/image", raw=broken, headers={"Content-Type": "multipart/form-data; boundary=B"}), 400)
    _refused(http("GET", url + "/api/no/such/route"), 404)
    _refused(http("DELETE", url + "/api/nothing"), 404)
    _refused(http("GET", url + "/view"), 404)
    reply = http("GET", url + "/history/00000000-0000-0000-0000-000000000000")
    assert reply.status == 200 and reply.json() == {}
    assert http("GET", url + "/object_info/NoSuchClass").json() == {}
    assert http("POST", url + "/prompt", {"prompt": {}}).status == 400  # no outputs
    pid = "6f2b7c1e-8f6e-4d55-9a43-1c3f2b9e0a11"
    assert http("POST", url + "/prompt", {"prompt": {"9": {"class_type": "StubOutput", "inputs": {"value": 1}}},
                                          "prompt_id": pid}).status == 200
    _refused(http("POST", url + "/prompt", {"prompt": {"9": {"class_type": "StubOutput", "inputs": {"value": 1}}},
                                            "prompt_id": pid}), 400)


def test_json_bombs_and_bad_prompt_shapes_are_400(server) -> None:
    """Nesting deeper than the recursion limit, an integer too large for a float, NaN: the
    runner's JSON limits and prompt shape check answer 400, never a 500."""
    url, json_type = server.url, {"Content-Type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    for route in ("/prompt", "/api/settings", "/queue", "/api/jobs/cancel", "/api/v1/models/x/configurations"):
        reply = http("POST", url + route, raw=deep, headers=json_type)
        _refused(reply, 400)
        assert "nested too deeply" in reply.json()["error"]["message"]
    nested = b'{"prompt": {"1": {"class_type": "StubOutput", "inputs": {"value": ' + b"[" * 200 + b"]" * 200 + b"}}}}"
    assert "nested too deeply" in http("POST", url + "/prompt", raw=nested, headers=json_type).json()["error"]["message"]
    reply = http("POST", url + "/prompt", raw=b'{"prompt": 1' + b"0" * 5000 + b"}", headers=json_type)
    _refused(reply, 400)
    assert "integer too long" in reply.json()["error"]["message"]
    output = b'{"prompt": {"1": {"class_type": "StubOutput", "inputs": {"value": 1}}}, "number": '
    for number in (b"1" + b"0" * 400, b"NaN", b"Infinity"):
        _refused(http("POST", url + "/prompt", raw=output + number + b"}", headers=json_type), 400)
    reply = http("POST", url + "/prompt", {"prompt": {"1": {"class_type": "StubOutput", "inputs": {}, "_meta": "x"}}})
    _refused(reply, 400)
    assert reply.json()["error"]["details"] == "node 1: '_meta' must be an object, not a string."
    assert http("GET", url + "/queue").json()["queue_pending"] == []


def test_body_limit(make_server) -> None:
    server = make_server(stub_registry(), max_upload_size_mb=0.01)
    big = b"x" * 20000
    _refused(http("POST", server.url + "/prompt", raw=big, headers={"Content-Type": "application/json"}), 413)
    body, content_type = multipart({"image": ("big.png", big)})
    _refused(http("POST", server.url + "/upload/image", raw=body, headers={"Content-Type": content_type}), 413)


def test_foreign_origin_refused_on_loopback(server) -> None:
    host = server.url.split("//")[1]
    _refused(http("GET", server.url + "/api/prompt", headers={"Origin": "http://evil.example"}), 403)
    _refused(http("POST", server.url + "/prompt", {"prompt": {}}, headers={"Origin": "http://localhost:1"}), 403)
    assert http("GET", server.url + "/api/prompt", headers={"Origin": f"http://{host}"}).status == 200
    _refused(http("GET", server.url + "/api/prompt", headers={"Origin": "http://["}), 403)  # unparsable
    assert http("GET", server.url + "/api/prompt").status == 200  # no Origin: not a browser


def test_cors_allows_other_origins(make_server) -> None:
    server = make_server(stub_registry(), cors_origin="https://app.example")
    reply = http("GET", server.url + "/api/prompt", headers={"Origin": "http://evil.example"})
    assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    reply = http("OPTIONS", server.url + "/api/prompt", headers={"Origin": "https://app.example"})
    assert reply.status == 200 and "POST" in reply.headers["Access-Control-Allow-Methods"]
